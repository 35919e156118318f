//! The fake Salesforce's SOAP API, login side: `POST /services/Soap/u/NN.0[/…]` (partner) and
//! `/services/Soap/c/NN.0[/…]` (enterprise), SOAP 1.1 envelopes read namespace-aware (any
//! prefix, or a default `xmlns`; `SOAPAction` decides nothing).
//!
//! - `login` (username, password + security token): a new session, `loginResponse` with
//!   `serverUrl`, `sessionId`, `userInfo`…; `INVALID_LOGIN`, or `INVALID_OPERATION` from API
//!   65.0 on or when the org disabled SOAP `login()`.
//! - `getUserInfo`, `logout` and any other call (`query`…): need a `SessionHeader` with a
//!   session of the org whose My Domain is the host (an OAuth access token or a SOAP session;
//!   not a JWT-format token), else `INVALID_SESSION_ID`.
//!
//! This module is the fake's own reading of the wire format, independent of grantshift's.

use super::{classify, random_token_part, HostKind, Issued, OAuthState, Org, SfResponse, User};
use http::StatusCode;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const SOAP_PREFIX: &str = "/services/Soap/";
pub const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const PARTNER_NS: &str = "urn:partner.soap.sforce.com";
pub const ENTERPRISE_NS: &str = "urn:enterprise.soap.sforce.com";
pub const PARTNER_FAULT_NS: &str = "urn:fault.partner.soap.sforce.com";
pub const ENTERPRISE_FAULT_NS: &str = "urn:fault.enterprise.soap.sforce.com";
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// What SOAP responses are sent as.
pub const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";
/// The first API version without SOAP `login()`.
pub const LOGIN_REMOVED_IN: u32 = 65;
pub const INVALID_LOGIN_MESSAGE: &str =
    "Invalid username, password, security token; or user locked out.";
pub const INVALID_SESSION_MESSAGE: &str =
    "Invalid Session ID found in SessionHeader: Illegal Session";
pub const LOGIN_DISABLED_MESSAGE: &str = "SOAP API login() is disabled by default in this org. \
     Contact your Salesforce administrator to enable it.";
/// `sessionSecondsValid` in user info.
pub const SESSION_SECONDS_VALID: u32 = 7200;

/// Which SOAP API a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/services/Soap/u/`.
    Partner,
    /// `/services/Soap/c/`.
    Enterprise,
}

impl Api {
    pub fn ns(self) -> &'static str {
        match self {
            Api::Partner => PARTNER_NS,
            Api::Enterprise => ENTERPRISE_NS,
        }
    }

    pub fn fault_ns(self) -> &'static str {
        match self {
            Api::Partner => PARTNER_FAULT_NS,
            Api::Enterprise => ENTERPRISE_FAULT_NS,
        }
    }

    /// The path letter: `u` or `c`.
    pub fn letter(self) -> char {
        match self {
            Api::Partner => 'u',
            Api::Enterprise => 'c',
        }
    }
}

/// A SOAP endpoint path: `/services/Soap/{u|c}/NN.N[/rest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoapPath {
    pub api: Api,
    /// As written, e.g. `62.0`.
    pub version: String,
    pub major: u32,
    /// What follows the version (without the slash), e.g. the org id; `None` if nothing.
    pub rest: Option<String>,
}

pub fn parse_path(path: &str) -> Option<SoapPath> {
    let tail = path.strip_prefix(SOAP_PREFIX)?;
    let (letter, tail) = tail.split_once('/')?;
    let api = match letter {
        "u" => Api::Partner,
        "c" => Api::Enterprise,
        _ => return None,
    };
    let (version, rest) = match tail.split_once('/') {
        Some((v, r)) => (v, (!r.is_empty()).then(|| r.to_string())),
        None => (tail, None),
    };
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some(SoapPath {
        api,
        version: version.to_string(),
        major: major.parse().ok()?,
        rest,
    })
}

/// An element of a parsed envelope: resolved namespace, local name, its text, its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elem {
    pub ns: Option<String>,
    pub local: String,
    pub text: String,
    pub children: Vec<Elem>,
}

impl Elem {
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.local == local
    }

    /// The first child named `local` in namespace `ns`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.is(ns, local))
    }
}

/// A request envelope: its header entries and the operation element (the Body's first child).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub headers: Vec<Elem>,
    pub op: Elem,
}

impl Envelope {
    /// `SessionHeader/sessionId` in namespace `ns`.
    pub fn session_id(&self, ns: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.is(ns, "SessionHeader"))
            .and_then(|h| h.child(ns, "sessionId"))
            .map(|s| s.text.trim())
    }

    /// The text of the operation's child `local` (in the operation's namespace).
    pub fn arg(&self, local: &str) -> Option<&str> {
        let ns = self.op.ns.as_deref()?;
        self.op.child(ns, local).map(|c| c.text.as_str())
    }
}

/// Parse a SOAP 1.1 envelope (namespace-aware, entities resolved); `Err` says what is wrong.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    let root = parse_tree(body)?;
    if !root.is(ENVELOPE_NS, "Envelope") {
        return Err(format!(
            "root element is {{{}}}{}, not a SOAP 1.1 Envelope",
            root.ns.as_deref().unwrap_or(""),
            root.local
        ));
    }
    let headers = root
        .child(ENVELOPE_NS, "Header")
        .map(|h| h.children.clone())
        .unwrap_or_default();
    let op = root
        .child(ENVELOPE_NS, "Body")
        .ok_or("no SOAP Body")?
        .children
        .first()
        .cloned()
        .ok_or("empty SOAP Body")?;
    Ok(Envelope { headers, op })
}

fn parse_tree(body: &[u8]) -> Result<Elem, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Elem> = Vec::new();
    let mut root = None;
    let new_elem = |ns: ResolveResult<'_>, local: &[u8]| -> Result<Elem, String> {
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(format!(
                    "unknown namespace prefix {}",
                    String::from_utf8_lossy(&p)
                ))
            }
        };
        Ok(Elem {
            ns,
            local: String::from_utf8_lossy(local).into_owned(),
            ..Elem::default()
        })
    };
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("malformed XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let elem = new_elem(ns, e.local_name().as_ref())?;
                stack.push(elem);
            }
            Event::Empty(e) => {
                let elem = new_elem(ns, e.local_name().as_ref())?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(elem),
                    None if root.is_none() => root = Some(elem),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::End(_) => {
                let elem = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(elem),
                    None if root.is_none() => root = Some(elem),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| e.to_string())?;
                stack
                    .last_mut()
                    .ok_or("CDATA outside the root")?
                    .text
                    .push_str(&s);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                stack
                    .last_mut()
                    .ok_or("reference outside the root")?
                    .text
                    .push_str(&resolved);
            }
            Event::DocType(_) => return Err("DTDs are not allowed in SOAP messages".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// A 200 answer whose Body holds `body` (elements in the default namespace `ns`).
pub fn ok_response(ns: &str, body: &str) -> SfResponse {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{ENVELOPE_NS}\" \
         xmlns=\"{ns}\" xmlns:xsi=\"{XSI_NS}\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    );
    SfResponse {
        status: StatusCode::OK,
        headers: vec![("content-type", XML_CONTENT_TYPE.into())],
        body: xml.into_bytes(),
    }
}

/// The kinds of API fault `detail` carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultType {
    Login,
    InvalidSessionId,
    UnexpectedError,
}

impl FaultType {
    fn name(self) -> &'static str {
        match self {
            FaultType::Login => "LoginFault",
            FaultType::InvalidSessionId => "InvalidSessionIdFault",
            FaultType::UnexpectedError => "UnexpectedErrorFault",
        }
    }
}

/// A Salesforce API fault: HTTP 500, `faultcode` `sf:<code>`, `faultstring` `<code>: <message>`,
/// `detail` an `sf:<type>` with `exceptionCode` and `exceptionMessage`.
pub fn api_fault(api: Api, kind: FaultType, code: &str, message: &str) -> SfResponse {
    let (message, t) = (escape(message), kind.name());
    let body = format!(
        "<soapenv:Envelope xmlns:soapenv=\"{ENVELOPE_NS}\" xmlns:sf=\"{fault_ns}\" \
         xmlns:xsi=\"{XSI_NS}\"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>\
         <faultstring>{code}: {message}</faultstring><detail><sf:{t} xsi:type=\"sf:{t}\">\
         <sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}\
         </sf:exceptionMessage></sf:{t}></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
        fault_ns = api.fault_ns()
    );
    fault_response(body)
}

/// A fault the SOAP stack raises before the API sees the call: `soapenv:Client`.
pub fn client_fault(message: &str) -> SfResponse {
    fault_response(format!(
        "<soapenv:Envelope xmlns:soapenv=\"{ENVELOPE_NS}\"><soapenv:Body><soapenv:Fault>\
         <faultcode>soapenv:Client</faultcode><faultstring>{}</faultstring></soapenv:Fault>\
         </soapenv:Body></soapenv:Envelope>",
        escape(message)
    ))
}

fn fault_response(body: String) -> SfResponse {
    SfResponse {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![("content-type", XML_CONTENT_TYPE.into())],
        body: body.into_bytes(),
    }
}

pub fn invalid_session(api: Api) -> SfResponse {
    api_fault(
        api,
        FaultType::InvalidSessionId,
        "INVALID_SESSION_ID",
        INVALID_SESSION_MESSAGE,
    )
}

/// `<name>value</name>` with the value escaped.
fn field(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", escape(value))
}

/// The `GetUserInfoResult` fields for `user` of `org`, in the WSDL's order.
pub fn user_info_fields(org: &Org, user: &User) -> String {
    let mut xml = String::new();
    let add = |xml: &mut String, name: &str, value: &str| xml.push_str(&field(name, value));
    add(&mut xml, "accessibilityMode", "false");
    add(&mut xml, "chatterExternal", "false");
    add(&mut xml, "currencySymbol", "$");
    add(&mut xml, "orgAttachmentFileSizeLimit", "5242880");
    add(&mut xml, "orgDefaultCurrencyIsoCode", "USD");
    add(&mut xml, "orgDefaultCurrencyLocale", "en_US");
    add(&mut xml, "orgDisallowHtmlAttachments", "false");
    add(&mut xml, "orgHasPersonAccounts", "false");
    add(&mut xml, "organizationId", &org.org_id);
    add(&mut xml, "organizationMultiCurrency", "false");
    add(&mut xml, "organizationName", &org.name);
    add(&mut xml, "profileId", &user.profile_id());
    xml.push_str("<roleId xsi:nil=\"true\"/>");
    add(
        &mut xml,
        "sessionSecondsValid",
        &SESSION_SECONDS_VALID.to_string(),
    );
    add(&mut xml, "userDefaultCurrencyIsoCode", "USD");
    add(&mut xml, "userEmail", &user.email());
    add(&mut xml, "userFullName", &user.full_name());
    add(&mut xml, "userId", &user.user_id);
    add(&mut xml, "userLanguage", User::LANGUAGE);
    add(&mut xml, "userLocale", User::LOCALE);
    add(&mut xml, "userName", &user.username);
    add(&mut xml, "userTimeZone", User::TIME_ZONE);
    add(&mut xml, "userType", "Standard");
    add(&mut xml, "userUiSkin", "Theme3");
    xml
}

/// The `loginResponse` of a new session `session_id` for `user` of `org`.
pub fn login_response(path: &SoapPath, org: &Org, user: &User, session_id: &str) -> SfResponse {
    let base = format!("https://{}/services/Soap", org.my_domain);
    let (v, org15) = (&path.version, org.org15());
    let result = [
        field("metadataServerUrl", &format!("{base}/m/{v}/{org15}")),
        field("passwordExpired", "false"),
        field("sandbox", &org.sandbox.to_string()),
        field(
            "serverUrl",
            &format!("{base}/{}/{v}/{org15}", path.api.letter()),
        ),
        field("sessionId", session_id),
        field("userId", &user.user_id),
        format!("<userInfo>{}</userInfo>", user_info_fields(org, user)),
    ]
    .concat();
    ok_response(
        path.api.ns(),
        &format!("<loginResponse><result>{result}</result></loginResponse>"),
    )
}

/// The canned answer to a call other than login/getUserInfo/logout.
pub fn canned_response(api: Api, op: &str) -> SfResponse {
    let body = if op == "query" || op == "queryAll" {
        format!(
            "<{op}Response><result xsi:type=\"QueryResult\"><done>true</done>\
             <queryLocator xsi:nil=\"true\"/><records xsi:type=\"sf:sObject\" \
             xmlns:sf=\"urn:sobject.{}.soap.sforce.com\"><sf:type>Account</sf:type>\
             <sf:Id>0015g00000CannedAAA</sf:Id><sf:Name>Canned Account</sf:Name></records>\
             <size>1</size></result></{op}Response>",
            if api == Api::Partner {
                "partner"
            } else {
                "enterprise"
            }
        )
    } else {
        format!("<{op}Response/>")
    };
    ok_response(api.ns(), &body)
}

impl OAuthState {
    /// Serve `/services/Soap/…`.
    pub fn soap(&self, call: &super::Call<'_>) -> SfResponse {
        let kind = classify(call.host);
        let Some(path) = parse_path(call.path).filter(|_| kind != HostKind::Other) else {
            return SfResponse::text(StatusCode::NOT_FOUND, "no SOAP endpoint here");
        };
        if call.method != "POST" {
            return SfResponse::text(StatusCode::METHOD_NOT_ALLOWED, "SOAP calls are POSTs");
        }
        let media = call
            .header("content-type")
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        if media.as_deref() != Some("text/xml") {
            return client_fault("Content-Type must be text/xml for SOAP 1.1");
        }
        let envelope = match parse_envelope(call.body) {
            Ok(e) => e,
            Err(e) => return client_fault(&format!("Unable to parse the request: {e}")),
        };
        let ns = path.api.ns();
        if envelope.op.ns.as_deref() != Some(ns) {
            return client_fault(&format!(
                "No operation available for request {{{}}}{}, please check the WSDL for the service.",
                envelope.op.ns.as_deref().unwrap_or(""),
                envelope.op.local
            ));
        }
        match envelope.op.local.as_str() {
            "login" => self.soap_login(call, kind, &path, &envelope),
            op => {
                let Some(session) = self.soap_session(call, &path, &envelope) else {
                    return invalid_session(path.api);
                };
                match op {
                    "getUserInfo" => {
                        let world = self.world.lock().unwrap();
                        let org = world.orgs.iter().find(|o| o.org_id == session.org_id);
                        let user =
                            org.and_then(|o| o.users.iter().find(|u| u.user_id == session.user_id));
                        match (org, user) {
                            (Some(org), Some(user)) => ok_response(
                                ns,
                                &format!(
                                    "<getUserInfoResponse><result>{}</result></getUserInfoResponse>",
                                    user_info_fields(org, user)
                                ),
                            ),
                            _ => invalid_session(path.api),
                        }
                    }
                    "logout" => {
                        self.end_session(&session.access_token);
                        ok_response(ns, "<logoutResponse/>")
                    }
                    other => canned_response(path.api, other),
                }
            }
        }
    }

    fn soap_login(
        &self,
        call: &super::Call<'_>,
        kind: HostKind,
        path: &SoapPath,
        envelope: &Envelope,
    ) -> SfResponse {
        let api = path.api;
        if path.major >= LOGIN_REMOVED_IN {
            return api_fault(
                api,
                FaultType::UnexpectedError,
                "INVALID_OPERATION",
                &format!(
                    "The SOAP Login operation is not available in the API version specified ({})",
                    path.version
                ),
            );
        }
        let invalid_login = || {
            api_fault(
                api,
                FaultType::Login,
                "INVALID_LOGIN",
                INVALID_LOGIN_MESSAGE,
            )
        };
        let username = envelope.arg("username").unwrap_or("").trim();
        let password = envelope.arg("password").unwrap_or("");
        let world = self.world.lock().unwrap();
        let found = Self::candidate_orgs(&world, kind, call.host)
            .into_iter()
            .find_map(|org| org.user(username).map(|u| (org, u)));
        let Some((org, user)) = found else {
            return invalid_login();
        };
        let expected = format!(
            "{}{}",
            user.password,
            user.security_token.as_deref().unwrap_or("")
        );
        if !user.active || password != expected {
            return invalid_login();
        }
        if !org.soap_login_enabled {
            return api_fault(
                api,
                FaultType::UnexpectedError,
                "INVALID_OPERATION",
                LOGIN_DISABLED_MESSAGE,
            );
        }
        let session_id = format!("{}!AQ{}", org.org15(), random_token_part());
        self.issued.lock().unwrap().push(Issued {
            access_token: session_id.clone(),
            signature: None,
            grant: "soap_login".into(),
            org_id: org.org_id.clone(),
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            my_domain: org.my_domain.clone(),
            jwt: false,
        });
        login_response(path, org, user, &session_id)
    }

    /// The live, opaque session in the `SessionHeader`, if it belongs to the org this host
    /// (and the org id in the path, if any) names.
    fn soap_session(
        &self,
        call: &super::Call<'_>,
        path: &SoapPath,
        envelope: &Envelope,
    ) -> Option<Issued> {
        let token = envelope.session_id(path.api.ns())?;
        if self.ended.lock().unwrap().contains(token) {
            return None;
        }
        let issued = self
            .issued
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.access_token == token)
            .cloned()?;
        let org_in_path = path.rest.as_deref().and_then(|r| r.split('/').next());
        let org_matches = org_in_path.is_none_or(|o| issued.org_id.starts_with(o) && o.len() >= 15);
        (!issued.jwt && issued.my_domain.eq_ignore_ascii_case(call.host) && org_matches)
            .then_some(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_api_the_version_and_what_follows() {
        let p = parse_path("/services/Soap/u/62.0").unwrap();
        assert_eq!(
            (p.api, p.version.as_str(), p.major),
            (Api::Partner, "62.0", 62)
        );
        assert_eq!(p.rest, None);
        let p = parse_path("/services/Soap/c/64.0/00D5g000004Acme").unwrap();
        assert_eq!(p.api, Api::Enterprise);
        assert_eq!(p.rest.as_deref(), Some("00D5g000004Acme"));
        for bad in [
            "/services/Soap/m/62.0",
            "/services/Soap/u/",
            "/services/Soap/u/62",
            "/services/Soap/u/v62.0",
            "/services/data/v62.0",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    const LOGIN_BODY: &str = "<login xmlns=\"urn:partner.soap.sforce.com\"><username>u@x.com</username><password>p&amp;w&#x3C;T</password></login>";

    #[test]
    fn envelopes_parse_alike_whatever_the_prefixes() {
        let styles = [
            format!("<se:Envelope xmlns:se=\"{ENVELOPE_NS}\"><se:Body>{LOGIN_BODY}</se:Body></se:Envelope>"),
            format!("<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"{ENVELOPE_NS}\"><soapenv:Header><CallOptions xmlns=\"urn:partner.soap.sforce.com\"><client>x</client></CallOptions></soapenv:Header><soapenv:Body>{LOGIN_BODY}</soapenv:Body></soapenv:Envelope>"),
            format!("<env:Envelope xmlns:env=\"{ENVELOPE_NS}\" xmlns:n1=\"urn:partner.soap.sforce.com\"><env:Body><n1:login><n1:username>u@x.com</n1:username><n1:password>p&amp;w&lt;T</n1:password></n1:login></env:Body></env:Envelope>"),
            format!("<Envelope xmlns=\"{ENVELOPE_NS}\">\n  <Body>\n    {LOGIN_BODY}\n  </Body>\n</Envelope>"),
        ];
        for s in &styles {
            let e = parse_envelope(s.as_bytes()).unwrap_or_else(|err| panic!("{err}: {s}"));
            assert!(e.op.is(PARTNER_NS, "login"), "{s}");
            assert_eq!(e.arg("username"), Some("u@x.com"));
            assert_eq!(e.arg("password"), Some("p&w<T"), "entities are resolved");
        }
    }

    #[test]
    fn the_session_header_is_read_in_the_apis_namespace() {
        let s = format!("<s:Envelope xmlns:s=\"{ENVELOPE_NS}\"><s:Header><SessionHeader xmlns=\"{PARTNER_NS}\"><sessionId> 00D!AQx </sessionId></SessionHeader></s:Header><s:Body><getUserInfo xmlns=\"{PARTNER_NS}\"/></s:Body></s:Envelope>");
        let e = parse_envelope(s.as_bytes()).unwrap();
        assert!(e.op.is(PARTNER_NS, "getUserInfo"));
        assert_eq!(e.session_id(PARTNER_NS), Some("00D!AQx"));
        assert_eq!(e.session_id(ENTERPRISE_NS), None);
    }

    #[test]
    fn broken_or_foreign_documents_are_errors() {
        for bad in [
            "".to_string(),
            "<a>".to_string(),
            format!("<s:Envelope xmlns:s=\"{ENVELOPE_NS}\"><s:Body><x></y></s:Body></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ENVELOPE_NS}\"><s:Body/></s:Envelope>"),
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><a/></s:Body></s:Envelope>".to_string(),
            "<q:Envelope><q:Body><a/></q:Body></q:Envelope>".to_string(),
            format!("<!DOCTYPE x [<!ENTITY e \"v\">]><s:Envelope xmlns:s=\"{ENVELOPE_NS}\"><s:Body><a>&e;</a></s:Body></s:Envelope>"),
        ] {
            assert!(parse_envelope(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn faults_have_salesforces_shape() {
        let f = api_fault(
            Api::Partner,
            FaultType::Login,
            "INVALID_LOGIN",
            INVALID_LOGIN_MESSAGE,
        );
        assert_eq!(f.status, 500);
        let expected = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:sf=\"urn:fault.partner.soap.sforce.com\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type=\"sf:LoginFault\"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>";
        assert_eq!(String::from_utf8(f.body).unwrap(), expected);
        let f = invalid_session(Api::Enterprise);
        let text = String::from_utf8(f.body).unwrap();
        assert!(text.contains("xmlns:sf=\"urn:fault.enterprise.soap.sforce.com\""));
        assert!(text.contains("<sf:InvalidSessionIdFault xsi:type=\"sf:InvalidSessionIdFault\">"));
        // Our own answers parse with our own reader.
        assert!(parse_tree(text.as_bytes()).is_ok());
    }
}
