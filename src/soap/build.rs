//! The answers grantshift gives in place of Salesforce's: a `loginResponse` and a
//! `LoginFault`, each in the request's API namespace, every value escaped.

use super::{Api, UserInfo};
use quick_xml::escape::escape;

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
);

/// What a `loginResponse`'s `result` holds. No `Debug`: `session_id` is an access token.
pub struct LoginResult<'a> {
    /// The identity URL's `urls.metadata`, `{version}` set.
    pub metadata_server_url: &'a str,
    pub password_expired: bool,
    pub sandbox: bool,
    /// The identity URL's `urls.partner` / `urls.enterprise`, `{version}` set.
    pub server_url: &'a str,
    /// The access token.
    pub session_id: &'a str,
    pub user_id: &'a str,
    /// From `getUserInfo()`; must carry `organizationId` (jsforce) and `sessionSecondsValid`
    /// (Data Loader).
    pub user_info: &'a UserInfo,
}

fn element(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The `loginResponse` envelope (HTTP 200, `text/xml; charset=utf-8`): `loginResponse` in
/// the API's namespace as the default namespace (no prefix, as Salesforce sends it), the
/// result's elements in the WSDL's order.
pub fn login_response(api: Api, result: &LoginResult<'_>) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str(ENVELOPE_OPEN);
    out.push_str("><soapenv:Body><loginResponse xmlns=\"");
    out.push_str(api.namespace());
    out.push_str("\"><result>");
    element(&mut out, "metadataServerUrl", result.metadata_server_url);
    element(
        &mut out,
        "passwordExpired",
        bool_text(result.password_expired),
    );
    element(&mut out, "sandbox", bool_text(result.sandbox));
    element(&mut out, "serverUrl", result.server_url);
    element(&mut out, "sessionId", result.session_id);
    element(&mut out, "userId", result.user_id);
    out.push_str("<userInfo>");
    result.user_info.write_children(&mut out);
    out.push_str("</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>");
    out
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// A `LoginFault` envelope (HTTP 500, `text/xml; charset=utf-8`) as Salesforce sends it: the
/// fault namespace bound to the literal prefix `sf` (simple-salesforce reads
/// `sf:exceptionCode` and `sf:exceptionMessage` by their prefixed names), `faultcode`
/// `sf:CODE`, `faultstring` `CODE: message`.
pub fn login_fault(api: Api, exception_code: &str, message: &str) -> String {
    let code = escape(exception_code);
    let message = escape(message);
    let mut out = String::with_capacity(1024);
    out.push_str(ENVELOPE_OPEN);
    out.push_str(" xmlns:sf=\"");
    out.push_str(api.fault_namespace());
    out.push_str("\"><soapenv:Body><soapenv:Fault><faultcode>sf:");
    out.push_str(&code);
    out.push_str("</faultcode><faultstring>");
    out.push_str(&code);
    out.push_str(": ");
    out.push_str(&message);
    out.push_str(
        "</faultstring><detail><sf:LoginFault xsi:type=\"sf:LoginFault\"><sf:exceptionCode>",
    );
    out.push_str(&code);
    out.push_str("</sf:exceptionCode><sf:exceptionMessage>");
    out.push_str(&message);
    out.push_str("</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>");
    out
}

/// The answer to a `logout()` (HTTP 200, `text/xml; charset=utf-8`).
pub fn logout_response(api: Api) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(ENVELOPE_OPEN);
    out.push_str("><soapenv:Body><logoutResponse xmlns=\"");
    out.push_str(api.namespace());
    out.push_str("\"/></soapenv:Body></soapenv:Envelope>");
    out
}
