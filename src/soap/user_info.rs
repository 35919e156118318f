//! `getUserInfo()`: the call Data Loader makes with a session (a `SessionHeader`), and its
//! `GetUserInfoResult`, which becomes a `loginResponse`'s `userInfo`.

use super::xml::{walk, Malformed, Ns, Step};
use super::Api;
use quick_xml::escape::escape;

macro_rules! user_info {
    ($($field:ident => $element:literal,)*) => {
        /// `GetUserInfoResult`, every field as its text (`None`: absent or `xsi:nil`), so
        /// what Salesforce answered is handed on as it was.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct UserInfo {
            $(pub $field: Option<String>,)*
        }

        impl UserInfo {
            /// The element names in the WSDL's order.
            pub const ELEMENTS: &'static [&'static str] = &[$($element),*];

            /// (element, value) in the WSDL's order.
            pub fn entries(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> + '_ {
                [$(($element, self.$field.as_deref())),*].into_iter()
            }

            fn slot(&mut self, element: &[u8]) -> Option<&mut Option<String>> {
                $(if element == $element.as_bytes() {
                    return Some(&mut self.$field);
                })*
                None
            }
        }
    };
}

user_info! {
    accessibility_mode => "accessibilityMode",
    chatter_external => "chatterExternal",
    currency_symbol => "currencySymbol",
    org_attachment_file_size_limit => "orgAttachmentFileSizeLimit",
    org_default_currency_iso_code => "orgDefaultCurrencyIsoCode",
    org_default_currency_locale => "orgDefaultCurrencyLocale",
    org_disallow_html_attachments => "orgDisallowHtmlAttachments",
    org_has_person_accounts => "orgHasPersonAccounts",
    organization_id => "organizationId",
    organization_multi_currency => "organizationMultiCurrency",
    organization_name => "organizationName",
    profile_id => "profileId",
    role_id => "roleId",
    session_seconds_valid => "sessionSecondsValid",
    user_default_currency_iso_code => "userDefaultCurrencyIsoCode",
    user_email => "userEmail",
    user_full_name => "userFullName",
    user_id => "userId",
    user_language => "userLanguage",
    user_locale => "userLocale",
    user_name => "userName",
    user_time_zone => "userTimeZone",
    user_type => "userType",
    user_ui_skin => "userUiSkin",
}

impl UserInfo {
    /// The fields as child elements (`<organizationId>…</organizationId>`, `xsi:nil` for
    /// `None`), in the WSDL's order; values escaped. The `xsi` prefix must be bound.
    pub(crate) fn write_children(&self, out: &mut String) {
        for (element, value) in self.entries() {
            match value {
                Some(v) => {
                    out.push('<');
                    out.push_str(element);
                    out.push('>');
                    out.push_str(&escape(v));
                    out.push_str("</");
                    out.push_str(element);
                    out.push('>');
                }
                None => {
                    out.push('<');
                    out.push_str(element);
                    out.push_str(" xsi:nil=\"true\"/>");
                }
            }
        }
    }
}

/// The `getUserInfo()` request for `session_id`, as WSC (Data Loader) sends it: POST it as
/// `text/xml; charset=UTF-8` with `SOAPAction: ""` to the identity URL's `urls.partner` (or
/// `urls.enterprise`).
pub fn get_user_info_request(api: Api, session_id: &str) -> String {
    let ns = api.namespace();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" "#,
            r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
            r#"<env:Header><SessionHeader xmlns="{ns}"><sessionId>{sid}</sessionId></SessionHeader>"#,
            r#"</env:Header><env:Body><m:getUserInfo xmlns:m="{ns}"/></env:Body></env:Envelope>"#,
        ),
        ns = ns,
        sid = escape(session_id),
    )
}

/// Why a `getUserInfo()` answer gave no [`UserInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInfoError {
    /// A SOAP fault: its `faultcode` (`sf:INVALID_SESSION_ID`) and `faultstring`.
    Fault { code: String, message: String },
    /// Not a `getUserInfoResponse` (the reason, for an event).
    Unparsable(&'static str),
}

impl From<Malformed> for UserInfoError {
    fn from(m: Malformed) -> UserInfoError {
        UserInfoError::Unparsable(m.reason())
    }
}

/// Reads a `getUserInfo()` answer of `api`: Envelope/Body/getUserInfoResponse/result/…;
/// unknown elements (fields newer than this list) are skipped, `xsi:nil` is `None`.
pub fn parse_user_info(api: Api, body: &[u8]) -> Result<UserInfo, UserInfoError> {
    const NOT: UserInfoError = UserInfoError::Unparsable("soap_not_user_info");
    let api_ns = match api {
        Api::Partner => Ns::Partner,
        Api::Enterprise => Ns::Enterprise,
    };
    let mut info = UserInfo::default();
    let mut found = false;
    let mut fault: Option<(String, String)> = None;
    // The element path down to depth 5 (result's children), as far as it matters.
    let mut field: Option<&'static str> = None;
    let mut fault_field: u8 = 0; // 1: faultcode, 2: faultstring
    let mut skip_from: Option<usize> = None;
    walk(body, |depth, step| {
        if let Some(d) = skip_from {
            if depth == d && matches!(step, Step::Close) {
                skip_from = None;
            }
            return Ok(());
        }
        match step {
            Step::Open { ns, local, nil } => {
                let ok = match depth {
                    1 => ns == Ns::SoapEnv && local == b"Envelope",
                    2 => ns == Ns::SoapEnv && (local == b"Body" || local == b"Header"),
                    _ => true,
                };
                if !ok {
                    return Err(NOT);
                }
                match depth {
                    2 if local == b"Header" => skip_from = Some(depth),
                    1 | 2 => {}
                    3 if ns == Ns::SoapEnv && local == b"Fault" => {
                        fault = Some(Default::default());
                    }
                    3 if ns == api_ns && local == b"getUserInfoResponse" => {}
                    3 => return Err(NOT),
                    4 if fault.is_some() => {
                        fault_field = match local {
                            b"faultcode" => 1,
                            b"faultstring" => 2,
                            _ => 0,
                        };
                        if fault_field == 0 {
                            skip_from = Some(depth);
                        }
                    }
                    4 if ns == api_ns && local == b"result" => {
                        if found {
                            return Err(NOT);
                        }
                        found = true;
                    }
                    5 if fault.is_none() && (ns == api_ns || ns == Ns::None) => {
                        match UserInfo::ELEMENTS.iter().find(|e| e.as_bytes() == local) {
                            Some(e) => {
                                field = Some(e);
                                let slot = info.slot(local).expect("listed");
                                *slot = (!nil).then(String::new);
                            }
                            None => skip_from = Some(depth),
                        }
                    }
                    _ => skip_from = Some(depth),
                }
            }
            Step::Text(t) => match (depth, &mut fault) {
                (4, Some((code, message))) => match fault_field {
                    1 => code.push_str(t),
                    2 => message.push_str(t),
                    _ => {}
                },
                (5, None) => {
                    if let Some(slot) = field.and_then(|e| info.slot(e.as_bytes())) {
                        slot.get_or_insert_with(String::new).push_str(t);
                    }
                }
                _ if t.trim().is_empty() => {}
                _ => return Err(NOT),
            },
            Step::Close => {
                if depth == 5 {
                    field = None;
                }
                if depth == 4 {
                    fault_field = 0;
                }
            }
        }
        Ok(())
    })?;
    if let Some((code, message)) = fault {
        return Err(UserInfoError::Fault {
            code: code.trim().to_owned(),
            message: message.trim().to_owned(),
        });
    }
    if !found {
        return Err(NOT);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A getUserInfo answer in Salesforce's shape (default namespace on the response element).
    const ANSWER: &str = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope "#,
        r#"xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns="urn:partner.soap.sforce.com" "#,
        r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>"#,
        r#"<getUserInfoResponse><result><accessibilityMode>false</accessibilityMode>"#,
        r#"<chatterExternal>false</chatterExternal><currencySymbol>$</currencySymbol>"#,
        r#"<futureField>x<deeper/></futureField>"#,
        r#"<organizationId>00D000000000001EAA</organizationId>"#,
        r#"<organizationName>Acme &amp; Co</organizationName><profileId>00e000000000001</profileId>"#,
        r#"<roleId xsi:nil="true"/><sessionSecondsValid>7200</sessionSecondsValid>"#,
        r#"<userId>005000000000001AAA</userId><userLocale>en_US</userLocale>"#,
        r#"<userName>a@b.c</userName></result></getUserInfoResponse></soapenv:Body>"#,
        r#"</soapenv:Envelope>"#
    );

    #[test]
    fn answer_is_read_with_unknown_fields_skipped() {
        let info = parse_user_info(Api::Partner, ANSWER.as_bytes()).unwrap();
        assert_eq!(info.organization_id.as_deref(), Some("00D000000000001EAA"));
        assert_eq!(info.organization_name.as_deref(), Some("Acme & Co"));
        assert_eq!(info.session_seconds_valid.as_deref(), Some("7200"));
        assert_eq!(info.role_id, None);
        assert_eq!(info.user_locale.as_deref(), Some("en_US"));
        assert_eq!(info.currency_symbol.as_deref(), Some("$"));
        assert_eq!(info.user_email, None);
    }

    #[test]
    fn answer_in_the_other_namespace_is_refused() {
        assert_eq!(
            parse_user_info(Api::Enterprise, ANSWER.as_bytes()),
            Err(UserInfoError::Unparsable("soap_not_user_info"))
        );
    }

    #[test]
    fn fault_is_reported() {
        let fault = super::super::login_fault(
            Api::Partner,
            "INVALID_SESSION_ID",
            "Invalid Session ID found in SessionHeader: Illegal Session",
        );
        match parse_user_info(Api::Partner, fault.as_bytes()) {
            Err(UserInfoError::Fault { code, message }) => {
                assert_eq!(code, "sf:INVALID_SESSION_ID");
                assert!(message.starts_with("INVALID_SESSION_ID: Invalid Session ID"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_carries_the_session_header_and_escapes_it() {
        let req = get_user_info_request(Api::Enterprise, "00D!a<b&");
        assert!(req.contains(r#"<SessionHeader xmlns="urn:enterprise.soap.sforce.com"><sessionId>00D!a&lt;b&amp;</sessionId>"#), "{req}");
        assert!(req.contains(r#"<m:getUserInfo xmlns:m="urn:enterprise.soap.sforce.com"/>"#));
        // What Salesforce reads from it: a well-formed envelope, the same session id back.
        let mut sid = String::new();
        let mut in_sid = false;
        walk(req.as_bytes(), |_, step| {
            match step {
                Step::Open { local, .. } => in_sid = local == b"sessionId",
                Step::Text(t) if in_sid => sid.push_str(t),
                _ => {}
            }
            Ok::<_, Malformed>(())
        })
        .unwrap();
        assert_eq!(sid, "00D!a<b&");
    }
}
