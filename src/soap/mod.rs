//! SOAP API `login()` (issue 16, groundwork; not wired into the proxy yet): detecting and
//! parsing a `login` or `logout` call, and building the answers grantshift would give in its
//! place. Pure: no I/O.
//!
//! - [`parse_login`]: a `POST` body to `/services/Soap/{u|c}/NN.0[/…]` → [`SoapLogin`], or
//!   why not ([`NotLogin`], whose [`NotLogin::reason`] is an event's `reason`).
//! - [`parse_logout`]: the session id of a `logout` call (from its `SessionHeader`).
//! - [`login_response`] / [`login_fault`]: a `loginResponse` (WSDL element order) and a
//!   `LoginFault` (the literal `sf:` prefix simple-salesforce looks for).
//! - [`get_user_info_request`] / [`parse_user_info`]: the `getUserInfo()` call Data Loader makes
//!   with a session, and its answer as [`UserInfo`].
//!
//! The API is decided by the path: `u` is the partner API, `c` the enterprise API. A `login`
//! element in the other API's namespace (`/u/` with `urn:enterprise.soap.sforce.com`) is not
//! something Salesforce answers with a session; it is [`NotLogin::Unparsable`]
//! (`soap_namespace_mismatch`), so the proxy forwards it untouched and records why.

mod build;
mod user_info;
mod xml;

pub use build::{login_fault, login_response, logout_response, LoginResult};
pub use user_info::{get_user_info_request, parse_user_info, UserInfo, UserInfoError};

use crate::password::Password;
use std::fmt;
use xml::{walk, Malformed, Ns, Step};
use zeroize::Zeroizing;

/// Which SOAP API a call is made to: the path's `u` (partner) or `c` (enterprise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Partner,
    Enterprise,
}

impl Api {
    /// The API's namespace (`login`, `loginResponse`, `getUserInfo`, `SessionHeader`).
    pub fn namespace(self) -> &'static str {
        match self {
            Api::Partner => "urn:partner.soap.sforce.com",
            Api::Enterprise => "urn:enterprise.soap.sforce.com",
        }
    }

    /// The namespace of the API's faults.
    pub fn fault_namespace(self) -> &'static str {
        match self {
            Api::Partner => "urn:fault.partner.soap.sforce.com",
            Api::Enterprise => "urn:fault.enterprise.soap.sforce.com",
        }
    }

    fn ns(self) -> Ns {
        match self {
            Api::Partner => Ns::Partner,
            Api::Enterprise => Ns::Enterprise,
        }
    }
}

/// A SOAP `login()` call: what the client sent.
#[derive(Debug)]
pub struct SoapLogin {
    pub api: Api,
    /// The API version from the path, as written (`"64.0"`).
    pub version: String,
    pub username: String,
    /// The password with the security token appended, entities decoded.
    pub password: Password,
}

/// Why a request is not a SOAP `login()` grantshift can upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLogin {
    /// Not a SOAP API request at all: another path, or not `text/xml` (SOAP 1.1). Not a
    /// candidate; nothing to record.
    NotSoap,
    /// A SOAP call other than `login` (`query`, `logout`, `getUserInfo`, …).
    OtherCall,
    /// A candidate that cannot be read; the reason is an event's `reason`.
    Unparsable(&'static str),
}

impl NotLogin {
    /// The `reason` for a skipped event (`None`: nothing to record).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            NotLogin::NotSoap | NotLogin::OtherCall => None,
            NotLogin::Unparsable(reason) => Some(reason),
        }
    }
}

impl From<Malformed> for NotLogin {
    fn from(m: Malformed) -> NotLogin {
        NotLogin::Unparsable(m.reason())
    }
}

/// A session id (an access token when grantshift minted it): redacted in `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(Zeroizing<String>);

impl SessionId {
    pub fn new(id: &str) -> SessionId {
        SessionId(Zeroizing::new(id.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// `/services/Soap/u/NN.N[/…]` → (partner, "NN.N"); `c` → enterprise. `path` is the request
/// target's path (no query).
pub fn soap_endpoint(path: &str) -> Option<(Api, &str)> {
    let rest = path.strip_prefix("/services/Soap/")?;
    let (api, rest) = match rest.as_bytes().first()? {
        b'u' => (Api::Partner, &rest[1..]),
        b'c' => (Api::Enterprise, &rest[1..]),
        _ => return None,
    };
    let rest = rest.strip_prefix('/')?;
    let version = rest.split('/').next().unwrap_or(rest);
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then_some((api, version))
}

/// SOAP 1.1: `text/xml`, with any parameters (`; charset=UTF-8`).
fn is_soap_11(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/xml"))
}

/// Where the walk is in a request envelope.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Start,
    Envelope,
    Header,
    /// A header block of the API's namespace with this local name (`SessionHeader`).
    HeaderBlock(HeaderBlock),
    Body,
    /// Inside the Body's call element.
    Call,
    /// Inside a field of the call or header block (username, password, sessionId).
    Field(Field),
    /// Inside an element not of interest (another header, a call's other fields, a call
    /// that is not login): the depth where it began, and where the walk resumes after it.
    Skip(usize, Resume),
    /// The Body's call is done; nothing else may follow in the Body.
    CallDone,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    Header,
    Session,
    Call,
    CallDone,
    Field(Field),
}

impl Resume {
    fn at(self) -> At {
        match self {
            Resume::Header => At::Header,
            Resume::Session => At::HeaderBlock(HeaderBlock::Session),
            Resume::Call => At::Call,
            Resume::CallDone => At::CallDone,
            Resume::Field(f) => At::Field(f),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderBlock {
    Session,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Username,
    Password,
    SessionId,
}

/// What a request envelope held that these parsers keep.
#[derive(Default)]
struct Request {
    /// The Body's first element: its namespace and whether it is `login` / `logout`.
    call: Option<(Ns, Call)>,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
    session_id: Option<Zeroizing<String>>,
    /// A field seen twice, or an element inside a field.
    malformed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Login,
    Logout,
    Other,
}

/// Reads a SOAP 1.1 request envelope of `api`: Header (optional) then Body, the Body's first
/// element the call. Structure errors are `soap_not_envelope`.
fn read_request(api: Api, body: &[u8]) -> Result<Request, NotLogin> {
    const NOT_ENVELOPE: NotLogin = NotLogin::Unparsable("soap_not_envelope");
    let mut req = Request::default();
    let mut at = At::Start;
    walk(body, |depth, step| {
        at = match (at, step) {
            (At::Skip(d, resume), Step::Close) if d == depth => resume.at(),
            (skip @ At::Skip(..), _) => skip,
            (
                At::Start,
                Step::Open {
                    ns: Ns::SoapEnv,
                    local: b"Envelope",
                    ..
                },
            ) => At::Envelope,
            (At::Start, _) => return Err(NOT_ENVELOPE),
            (
                At::Envelope,
                Step::Open {
                    ns: Ns::SoapEnv,
                    local: b"Header",
                    ..
                },
            ) => At::Header,
            (
                At::Envelope,
                Step::Open {
                    ns: Ns::SoapEnv,
                    local: b"Body",
                    ..
                },
            ) => At::Body,
            (At::Envelope, Step::Close) => At::Done,
            (At::Header, Step::Open { ns, local, .. }) => {
                if ns == api.ns() && local == b"SessionHeader" {
                    At::HeaderBlock(HeaderBlock::Session)
                } else {
                    At::Skip(depth, Resume::Header)
                }
            }
            (At::Header, Step::Close) => At::Envelope,
            (At::HeaderBlock(HeaderBlock::Session), Step::Open { ns, local, .. }) => {
                if local == b"sessionId" && (ns == api.ns() || ns == Ns::None) {
                    if req.session_id.is_some() {
                        req.malformed = true;
                    }
                    req.session_id = Some(Zeroizing::new(String::new()));
                    At::Field(Field::SessionId)
                } else {
                    At::Skip(depth, Resume::Session)
                }
            }
            (At::HeaderBlock(_), Step::Close) => At::Header,
            (At::Body, Step::Open { ns, local, .. }) => {
                let call = match local {
                    b"login" => Call::Login,
                    b"logout" => Call::Logout,
                    _ => Call::Other,
                };
                req.call = Some((ns, call));
                // The call's fields matter only for login in one of the two API namespaces.
                if call == Call::Login && matches!(ns, Ns::Partner | Ns::Enterprise) {
                    At::Call
                } else {
                    At::Skip(depth, Resume::CallDone)
                }
            }
            (At::Body, Step::Close) => At::Envelope,
            (At::Call, Step::Open { ns, local, .. }) => {
                let call_ns = req.call.map(|(ns, _)| ns);
                let field = match local {
                    b"username" => Some(Field::Username),
                    b"password" => Some(Field::Password),
                    _ => None,
                };
                match field {
                    Some(field) if Some(ns) == call_ns || ns == Ns::None => {
                        let dup = match field {
                            Field::Username => req.username.replace(String::new()).is_some(),
                            _ => req
                                .password
                                .replace(Zeroizing::new(String::new()))
                                .is_some(),
                        };
                        req.malformed |= dup;
                        At::Field(field)
                    }
                    _ => At::Skip(depth, Resume::Call),
                }
            }
            (At::Call, Step::Close) => At::CallDone,
            (At::Field(f), Step::Text(t)) => {
                let buf: &mut String = match f {
                    Field::Username => req.username.get_or_insert_with(String::new),
                    Field::Password => req.password.get_or_insert_with(Default::default),
                    Field::SessionId => req.session_id.get_or_insert_with(Default::default),
                };
                buf.push_str(t);
                At::Field(f)
            }
            (At::Field(f), Step::Open { .. }) => {
                req.malformed = true;
                At::Skip(depth, Resume::Field(f))
            }
            (At::Field(Field::SessionId), Step::Close) => At::HeaderBlock(HeaderBlock::Session),
            (At::Field(_), Step::Close) => At::Call,
            (At::CallDone, Step::Close) => At::Envelope,
            (At::CallDone, Step::Open { .. }) => return Err(NOT_ENVELOPE),
            // Whitespace between elements; anything else where only elements belong.
            (at, Step::Text(t)) if t.trim().is_empty() => at,
            (At::Call, Step::Text(_)) => {
                req.malformed = true;
                At::Call
            }
            _ => return Err(NOT_ENVELOPE),
        };
        Ok(())
    })?;
    if at != At::Done {
        return Err(NOT_ENVELOPE);
    }
    Ok(req)
}

/// Parses a SOAP `login()` request. `path` is the request's path (no query), `content_type`
/// its `Content-Type`, `body` the whole body (the caller bounds it).
pub fn parse_login(
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<SoapLogin, NotLogin> {
    let (api, version) = soap_endpoint(path).ok_or(NotLogin::NotSoap)?;
    if !is_soap_11(content_type) {
        return Err(NotLogin::NotSoap);
    }
    let req = read_request(api, body)?;
    match req.call {
        Some((ns, Call::Login)) if ns == api.ns() => {}
        Some((Ns::Partner | Ns::Enterprise, Call::Login)) => {
            return Err(NotLogin::Unparsable("soap_namespace_mismatch"))
        }
        _ => return Err(NotLogin::OtherCall),
    }
    let (Some(username), Some(password), false) = (req.username, req.password, req.malformed)
    else {
        return Err(NotLogin::Unparsable("soap_login_malformed"));
    };
    if username.is_empty() {
        return Err(NotLogin::Unparsable("soap_login_malformed"));
    }
    Ok(SoapLogin {
        api,
        version: version.to_owned(),
        username,
        password: Password::new(&password),
    })
}

/// The session id of a SOAP `logout()` call (from its `SessionHeader/sessionId`), or `None`
/// for anything else: another call, another API's namespace, no session header, not SOAP.
pub fn parse_logout(path: &str, content_type: Option<&str>, body: &[u8]) -> Option<SessionId> {
    let (api, _) = soap_endpoint(path)?;
    if !is_soap_11(content_type) {
        return None;
    }
    let req = read_request(api, body).ok()?;
    if req.call != Some((api.ns(), Call::Logout)) || req.malformed {
        return None;
    }
    let id = req.session_id?;
    let id = id.trim();
    (!id.is_empty()).then(|| SessionId::new(id))
}

/// What a successful `loginResponse` names (never its session id): for the event, and to
/// tell that Salesforce accepted the password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginAnswer {
    pub user_id: String,
    /// `userInfo/organizationId`, if given.
    pub organization_id: Option<String>,
    /// `serverUrl`, if given.
    pub server_url: Option<String>,
}

/// Reads a `loginResponse` of `api` (Envelope/Body/loginResponse/result): `Some` only for one
/// that carries a `sessionId` and a `userId`.
pub fn parse_login_answer(api: Api, body: &[u8]) -> Option<LoginAnswer> {
    #[derive(Clone, Copy, PartialEq)]
    enum Slot {
        None,
        UserId,
        OrgId,
        ServerUrl,
        SessionId,
    }
    let mut answer = LoginAnswer::default();
    let mut has_session = false;
    let mut slot = Slot::None;
    // Path so far: Envelope, Body, loginResponse, result, then a field (or userInfo's).
    let mut path_ok = [false; 6];
    walk(body, |depth, step| {
        match step {
            Step::Open { ns, local, .. } => {
                let ok = match depth {
                    1 => ns == Ns::SoapEnv && local == b"Envelope",
                    2 => ns == Ns::SoapEnv && local == b"Body",
                    3 => ns == api.ns() && local == b"loginResponse",
                    4 => local == b"result",
                    5 | 6 => true,
                    _ => false,
                };
                let depth = depth.min(6);
                path_ok[depth - 1] = ok && (depth == 1 || path_ok[depth - 2]);
                slot = match (depth, local, path_ok[depth - 1]) {
                    (5, b"userId", true) => Slot::UserId,
                    (5, b"serverUrl", true) => Slot::ServerUrl,
                    (5, b"sessionId", true) => Slot::SessionId,
                    (6, b"organizationId", true) => Slot::OrgId,
                    _ => Slot::None,
                };
            }
            Step::Text(t) => match slot {
                Slot::UserId => answer.user_id.push_str(t.trim()),
                Slot::OrgId => answer
                    .organization_id
                    .get_or_insert_with(String::new)
                    .push_str(t.trim()),
                Slot::ServerUrl => answer
                    .server_url
                    .get_or_insert_with(String::new)
                    .push_str(t.trim()),
                Slot::SessionId => has_session |= !t.trim().is_empty(),
                Slot::None => {}
            },
            Step::Close => slot = Slot::None,
        }
        Ok::<(), Malformed>(())
    })
    .ok()?;
    (has_session && !answer.user_id.is_empty()).then_some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

    /// A login envelope with the envelope prefix `p` (`""`: default namespace, the call then
    /// prefixed `urn:`), optional headers, and the call's namespace `ns`.
    fn envelope(p: &str, ns: &str, headers: &str, user: &str, pass: &str) -> String {
        if p.is_empty() {
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="{ENV}" xmlns:urn="{ns}"><Header>{headers}</Header><Body><urn:login><urn:username>{user}</urn:username><urn:password>{pass}</urn:password></urn:login></Body></Envelope>"#
            )
        } else {
            format!(
                r#"<{p}:Envelope xmlns:{p}="{ENV}"><{p}:Header>{headers}</{p}:Header><{p}:Body>
<login xmlns="{ns}"><username>{user}</username><password>{pass}</password></login>
</{p}:Body></{p}:Envelope>"#
            )
        }
    }

    fn ok(path: &str, ct: &str, body: &str) -> SoapLogin {
        parse_login(path, Some(ct), body.as_bytes()).unwrap()
    }

    #[test]
    fn four_prefix_styles_partner_and_enterprise() {
        for (path, ns, api) in [
            (
                "/services/Soap/u/59.0",
                "urn:partner.soap.sforce.com",
                Api::Partner,
            ),
            (
                "/services/Soap/c/50.0",
                "urn:enterprise.soap.sforce.com",
                Api::Enterprise,
            ),
        ] {
            for p in ["se", "soapenv", "env", ""] {
                let login = ok(path, "text/xml", &envelope(p, ns, "", "u@x.com", "pwTOKEN"));
                assert_eq!(login.api, api, "{p}");
                assert_eq!(login.username, "u@x.com");
                assert_eq!(login.password, Password::new("pwTOKEN"));
                assert_eq!(login.version, &path[path.len() - 4..]);
            }
        }
    }

    #[test]
    fn data_loader_shape() {
        let headers = r#"<CallOptions xmlns="urn:partner.soap.sforce.com"><client>DataLoaderBulkUI/64.0.0</client></CallOptions>"#;
        let body = envelope(
            "env",
            "urn:partner.soap.sforce.com",
            headers,
            "dl@x.com",
            "p",
        );
        let login = ok("/services/Soap/u/64.0/", "text/xml; charset=UTF-8", &body);
        assert_eq!((login.api, login.version.as_str()), (Api::Partner, "64.0"));
        assert_eq!(login.username, "dl@x.com");
        // The org-id suffix form works too.
        let login = ok("/services/Soap/u/64.0/00D000000000001", "text/xml", &body);
        assert_eq!(login.version, "64.0");
    }

    #[test]
    fn wsc_shape() {
        let body = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
            r#"<env:Body><m:login xmlns:m="urn:enterprise.soap.sforce.com" xmlns:sobj="urn:sobject.enterprise.soap.sforce.com">"#,
            r#"<m:username>w@x.com</m:username><m:password>s3cret</m:password></m:login></env:Body></env:Envelope>"#
        );
        let login = ok("/services/Soap/c/64.0", "text/xml; charset=UTF-8", body);
        assert_eq!(login.api, Api::Enterprise);
        assert_eq!(login.password, Password::new("s3cret"));
    }

    #[test]
    fn simple_salesforce_shape() {
        // login.py's envelope: soapenv + urn prefixes, CallOptions and LoginScopeHeader.
        let body = r#"<?xml version="1.0" encoding="utf-8" ?>
<soapenv:Envelope
        xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:urn="urn:partner.soap.sforce.com">
    <soapenv:Header>
        <urn:CallOptions>
            <urn:client>simple-salesforce</urn:client>
            <urn:defaultNamespace>sf</urn:defaultNamespace>
        </urn:CallOptions>
        <urn:LoginScopeHeader><urn:organizationId>00D000000000001</urn:organizationId></urn:LoginScopeHeader>
    </soapenv:Header>
    <soapenv:Body>
        <urn:login>
            <urn:username>s@x.com</urn:username>
            <urn:password>pw&lt;&amp;&gt;&quot;&apos;TOKEN</urn:password>
        </urn:login>
    </soapenv:Body>
</soapenv:Envelope>"#;
        let login = ok("/services/Soap/u/59.0", "text/xml", body);
        assert_eq!(login.username, "s@x.com");
        assert_eq!(login.password, Password::new("pw<&>\"'TOKEN"));
    }

    #[test]
    fn jsforce_shape() {
        let body = concat!(
            r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header/><se:Body>"#,
            r#"<login xmlns="urn:partner.soap.sforce.com"><username>j@x.com</username><password>a&#38;b&#x26;c</password></login>"#,
            r#"</se:Body></se:Envelope>"#
        );
        let login = ok("/services/Soap/u/50.0", "text/xml", body);
        assert_eq!(login.password, Password::new("a&b&c"));
    }

    #[test]
    fn doctype_is_refused() {
        let body = format!(
            r#"<?xml version="1.0"?><!DOCTYPE se:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>{}"#,
            envelope("se", "urn:partner.soap.sforce.com", "", "u", "&x;")
        );
        let err = parse_login("/services/Soap/u/64.0", Some("text/xml"), body.as_bytes());
        assert_eq!(err.unwrap_err().reason(), Some("soap_doctype"));
    }

    #[test]
    fn other_calls_and_non_soap() {
        let query = r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header><SessionHeader xmlns="urn:partner.soap.sforce.com"><sessionId>S</sessionId></SessionHeader></se:Header><se:Body><query xmlns="urn:partner.soap.sforce.com"><queryString>SELECT Id FROM Account</queryString></query></se:Body></se:Envelope>"#;
        let at = |path, ct: Option<&str>, body: &str| {
            parse_login(path, ct, body.as_bytes()).unwrap_err()
        };
        assert_eq!(
            at("/services/Soap/u/64.0", Some("text/xml"), query),
            NotLogin::OtherCall
        );
        // login in a namespace that is neither API's: some other service's login.
        let other = envelope("se", "urn:metadata.soap.sforce.com", "", "u", "p");
        assert_eq!(
            at("/services/Soap/u/64.0", Some("text/xml"), &other),
            NotLogin::OtherCall
        );
        let login = envelope("se", "urn:partner.soap.sforce.com", "", "u", "p");
        for path in [
            "/services/Soap/m/64.0",
            "/services/Soap/u/",
            "/services/Soap/u/v64",
            "/services/Soap/u64.0",
            "/services/oauth2/token",
            "/services/Soap/T/64.0",
        ] {
            assert_eq!(
                at(path, Some("text/xml"), &login),
                NotLogin::NotSoap,
                "{path}"
            );
        }
        for ct in [None, Some("application/soap+xml"), Some("application/xml")] {
            assert_eq!(
                at("/services/Soap/u/64.0", ct, &login),
                NotLogin::NotSoap,
                "{ct:?}"
            );
        }
        assert!(parse_login(
            "/services/Soap/u/64.0",
            Some("TEXT/XML;charset=utf-8"),
            login.as_bytes()
        )
        .is_ok());
    }

    #[test]
    fn namespace_must_match_the_path() {
        let enterprise = envelope("se", "urn:enterprise.soap.sforce.com", "", "u", "p");
        let err = parse_login(
            "/services/Soap/u/64.0",
            Some("text/xml"),
            enterprise.as_bytes(),
        );
        assert_eq!(err.unwrap_err().reason(), Some("soap_namespace_mismatch"));
        let partner = envelope("se", "urn:partner.soap.sforce.com", "", "u", "p");
        let err = parse_login(
            "/services/Soap/c/64.0",
            Some("text/xml"),
            partner.as_bytes(),
        );
        assert_eq!(err.unwrap_err().reason(), Some("soap_namespace_mismatch"));
    }

    #[test]
    fn unparsable_candidates_have_reasons() {
        let p = "/services/Soap/u/64.0";
        let reason = |body: &str| {
            parse_login(p, Some("text/xml"), body.as_bytes())
                .unwrap_err()
                .reason()
        };
        assert_eq!(reason("username=u&password=p"), Some("soap_not_xml"));
        let mismatched = envelope("se", "urn:partner.soap.sforce.com", "", "u", "p")
            .replace("</login>", "</logon>");
        assert_eq!(reason(&mismatched), Some("soap_not_xml"));
        assert_eq!(reason("<a><b></a>"), Some("soap_not_envelope"));
        assert_eq!(
            reason("<login xmlns='urn:partner.soap.sforce.com'/>"),
            Some("soap_not_envelope")
        );
        let missing = envelope("se", "urn:partner.soap.sforce.com", "", "u", "p")
            .replace("<password>p</password>", "");
        assert_eq!(reason(&missing), Some("soap_login_malformed"));
        let twice = envelope("se", "urn:partner.soap.sforce.com", "", "u", "p").replace(
            "<password>p</password>",
            "<password>p</password><password>q</password>",
        );
        assert_eq!(reason(&twice), Some("soap_login_malformed"));
        let nested = envelope("se", "urn:partner.soap.sforce.com", "", "u<b/>", "p");
        assert_eq!(reason(&nested), Some("soap_login_malformed"));
        let two_calls = envelope("se", "urn:partner.soap.sforce.com", "", "u", "p")
            .replace("</login>", "</login><login/>");
        assert_eq!(reason(&two_calls), Some("soap_not_envelope"));
        // The password never appears in what a failure carries.
        let err = format!(
            "{:?}",
            parse_login(
                p,
                Some("text/xml"),
                missing
                    .replace(
                        "<username>u</username>",
                        "<username>u</username><password>hunter2<x/></password>"
                    )
                    .as_bytes()
            )
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let login = ok(
            "/services/Soap/u/64.0",
            "text/xml",
            &envelope("se", "urn:partner.soap.sforce.com", "", "u", "hunter2"),
        );
        assert!(!format!("{login:?}").contains("hunter2"));
    }

    #[test]
    fn logout_gives_the_session_id() {
        let logout = |ns: &str, header: bool| {
            format!(
                r#"<env:Envelope xmlns:env="{ENV}"><env:Header>{}<CallOptions xmlns="{ns}"><client>x</client></CallOptions></env:Header><env:Body><m:logout xmlns:m="{ns}"/></env:Body></env:Envelope>"#,
                if header {
                    format!(
                        r#"<SessionHeader xmlns="{ns}"><sessionId>00D!AQ&amp;x</sessionId></SessionHeader>"#
                    )
                } else {
                    String::new()
                }
            )
        };
        let p = "urn:partner.soap.sforce.com";
        let id = parse_logout(
            "/services/Soap/u/64.0/00D",
            Some("text/xml"),
            logout(p, true).as_bytes(),
        )
        .unwrap();
        assert_eq!(id.expose(), "00D!AQ&x");
        assert!(!format!("{id:?}").contains("00D!"));
        assert!(parse_logout(
            "/services/Soap/u/64.0",
            Some("text/xml"),
            logout(p, false).as_bytes()
        )
        .is_none());
        assert!(parse_logout(
            "/services/Soap/c/64.0",
            Some("text/xml"),
            logout(p, true).as_bytes()
        )
        .is_none());
        let login = envelope("se", p, "", "u", "p");
        assert!(
            parse_logout("/services/Soap/u/64.0", Some("text/xml"), login.as_bytes()).is_none()
        );
    }

    /// Every element of a document with text, in order: (local name, text).
    fn leaves(xml: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        walk(xml.as_bytes(), |_, step| {
            match step {
                Step::Open { local, nil, .. } => out.push((
                    String::from_utf8_lossy(local).into(),
                    if nil { "<nil>".into() } else { String::new() },
                )),
                Step::Text(t) => out.last_mut().unwrap().1.push_str(t),
                Step::Close => {}
            }
            Ok::<_, Malformed>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn login_response_round_trips_in_wsdl_order() {
        let info = UserInfo {
            organization_id: Some("00D000000000001EAA".into()),
            organization_name: Some("A<&>B".into()),
            session_seconds_valid: Some("7200".into()),
            user_id: Some("005000000000001AAA".into()),
            ..UserInfo::default()
        };
        for api in [Api::Partner, Api::Enterprise] {
            let xml = login_response(
                api,
                &LoginResult {
                    metadata_server_url:
                        "https://x.my.salesforce.com/services/Soap/m/64.0/00D000000000001",
                    password_expired: false,
                    sandbox: true,
                    server_url: "https://x.my.salesforce.com/services/Soap/u/64.0/00D000000000001",
                    session_id: "00D!AQ<token>&",
                    user_id: "005000000000001AAA",
                    user_info: &info,
                },
            );
            assert!(xml.contains(&format!(r#"<loginResponse xmlns="{}">"#, api.namespace())));
            let got = leaves(&xml);
            let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            let mut want = vec![
                "Envelope",
                "Body",
                "loginResponse",
                "result",
                "metadataServerUrl",
                "passwordExpired",
                "sandbox",
                "serverUrl",
                "sessionId",
                "userId",
                "userInfo",
            ];
            want.extend(UserInfo::ELEMENTS);
            assert_eq!(names, want);
            let value = |n: &str| got.iter().find(|(k, _)| k == n).unwrap().1.clone();
            assert_eq!(value("sessionId"), "00D!AQ<token>&");
            assert_eq!(value("passwordExpired"), "false");
            assert_eq!(value("sandbox"), "true");
            assert_eq!(value("organizationName"), "A<&>B");
            assert_eq!(value("roleId"), "<nil>");
            // The userInfo copied in reads back as what went in.
            let answer = xml
                .replace("loginResponse", "getUserInfoResponse")
                .replace(
                    &xml[xml.find("<result>").unwrap() + 8..xml.find("<userInfo>").unwrap() + 10],
                    "",
                )
                .replace("</userInfo>", "");
            assert_eq!(parse_user_info(api, answer.as_bytes()).unwrap(), info);
        }
    }

    #[test]
    fn a_login_answer_names_the_user_and_org_but_needs_a_session() {
        // As Salesforce sends it: default namespace on loginResponse, prefixed envelope.
        let sf = |session: &str| {
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENV}" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>https://acme.my.salesforce.com/services/Soap/m/59.0/00D5g</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g</serverUrl><sessionId>{session}</sessionId><userId>0055g00000IntegAAA</userId><userInfo><organizationId>00D5g000004AcmeEAA</organizationId><userId>0055g00000IntegAAA</userId></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#
            )
        };
        let answer = parse_login_answer(Api::Partner, sf("00D!AQ.x").as_bytes()).unwrap();
        assert_eq!(answer.user_id, "0055g00000IntegAAA");
        assert_eq!(
            answer.organization_id.as_deref(),
            Some("00D5g000004AcmeEAA")
        );
        assert_eq!(
            answer.server_url.as_deref(),
            Some("https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g")
        );
        assert_eq!(parse_login_answer(Api::Partner, sf("").as_bytes()), None);
        // The other API's namespace, a fault, and what is not XML: no answer.
        assert_eq!(
            parse_login_answer(Api::Enterprise, sf("00D!AQ.x").as_bytes()),
            None
        );
        let fault = login_fault(Api::Partner, "INVALID_LOGIN", "Invalid username");
        assert_eq!(parse_login_answer(Api::Partner, fault.as_bytes()), None);
        assert_eq!(parse_login_answer(Api::Partner, b"<html>oops"), None);
    }

    #[test]
    fn fault_has_the_literal_sf_prefix() {
        let xml = login_fault(
            Api::Partner,
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
        assert!(xml.contains(r#"xmlns:sf="urn:fault.partner.soap.sforce.com""#));
        assert!(xml.contains("<faultcode>sf:INVALID_LOGIN</faultcode>"));
        assert!(xml.contains("<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>"));
        assert!(xml.contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"));
        assert!(xml.contains("<sf:exceptionMessage>Invalid username"));
        assert!(xml.contains(r#"<detail><sf:LoginFault xsi:type="sf:LoginFault">"#));
        let xml = login_fault(Api::Enterprise, "X", "a<b");
        assert!(xml.contains(r#"xmlns:sf="urn:fault.enterprise.soap.sforce.com""#));
        assert!(xml.contains("<sf:exceptionMessage>a&lt;b</sf:exceptionMessage>"));
        assert!(!leaves(&xml).is_empty());
    }
}
