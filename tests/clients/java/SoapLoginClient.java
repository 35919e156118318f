// Java's java.net.HttpURLConnection posting SOAP login() as Salesforce WSC does
// (Connector.newConnection: `text/xml; charset=UTF-8`, `SOAPAction: ""`, `Accept: text/xml`,
// an `env:` envelope with the call in the partner namespace), then getUserInfo() at the
// serverUrl it got, with the sessionId in a SessionHeader: what Data Loader does next.
//
// The proxy comes from -Dhttps.proxyHost / -Dhttps.proxyPort, grantshift's CA from a PKCS12
// truststore (-Djavax.net.ssl.trustStore); credentials from GS_USERNAME, GS_PASSWORD and
// GS_SECURITY_TOKEN. Compiled and run by tests/it/soap.rs.
// Usage: java -Dhttps.proxyHost=H -Dhttps.proxyPort=P SoapLoginClient LOGIN_URL API_VERSION
// Prints one JSON line: client, login_status, session_id, server_url, user_id,
// organization_id, session_seconds_valid, user_info_status, user_name.
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class SoapLoginClient {
    private static final String ENV = "http://schemas.xmlsoap.org/soap/envelope/";
    private static final String PARTNER = "urn:partner.soap.sforce.com";

    public static void main(String[] args) throws Exception {
        String loginUrl = args[0];
        String version = args[1];
        String login = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                + "<env:Envelope xmlns:env=\"" + ENV + "\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\""
                + " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><env:Body>"
                + "<m:login xmlns:m=\"" + PARTNER + "\"><m:username>" + escape(System.getenv("GS_USERNAME"))
                + "</m:username><m:password>"
                + escape(System.getenv("GS_PASSWORD") + System.getenv("GS_SECURITY_TOKEN"))
                + "</m:password></m:login></env:Body></env:Envelope>";
        StringBuilder out = new StringBuilder("{\"client\":")
                .append(ClientSupport.quote("java-httpurlconnection-soap/" + System.getProperty("java.version")));
        String[] reply = post(loginUrl + "/services/Soap/u/" + version, login);
        out.append(",\"login_status\":").append(reply[0]);
        String xml = reply[1];
        String session = element(xml, "sessionId");
        String serverUrl = element(xml, "serverUrl");
        out.append(",\"session_id\":").append(ClientSupport.quote(session));
        out.append(",\"server_url\":").append(ClientSupport.quote(serverUrl));
        out.append(",\"user_id\":").append(ClientSupport.quote(element(xml, "userId")));
        out.append(",\"organization_id\":").append(ClientSupport.quote(element(xml, "organizationId")));
        out.append(",\"session_seconds_valid\":").append(ClientSupport.quote(element(xml, "sessionSecondsValid")));
        if (session != null && serverUrl != null) {
            String info = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                    + "<env:Envelope xmlns:env=\"" + ENV + "\"><env:Header><SessionHeader xmlns=\"" + PARTNER
                    + "\"><sessionId>" + escape(session) + "</sessionId></SessionHeader></env:Header>"
                    + "<env:Body><m:getUserInfo xmlns:m=\"" + PARTNER + "\"/></env:Body></env:Envelope>";
            String[] infoReply = post(serverUrl, info);
            out.append(",\"user_info_status\":").append(infoReply[0]);
            out.append(",\"user_name\":").append(ClientSupport.quote(element(infoReply[1], "userName")));
        }
        System.out.println(out.append("}"));
    }

    /** POST `body` as WSC does; [status, body]. */
    private static String[] post(String url, String body) throws IOException {
        HttpURLConnection conn = (HttpURLConnection) new URL(url).openConnection();
        conn.setConnectTimeout(60_000);
        conn.setReadTimeout(60_000);
        conn.setRequestMethod("POST");
        conn.setDoOutput(true);
        conn.setRequestProperty("Content-Type", "text/xml; charset=UTF-8");
        conn.setRequestProperty("SOAPAction", "\"\"");
        conn.setRequestProperty("Accept", "text/xml");
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        conn.setFixedLengthStreamingMode(bytes.length);
        try (OutputStream os = conn.getOutputStream()) {
            os.write(bytes);
        }
        int status = conn.getResponseCode();
        InputStream in = status < 400 ? conn.getInputStream() : conn.getErrorStream();
        byte[] got = in == null ? new byte[0] : in.readAllBytes();
        return new String[] {Integer.toString(status), new String(got, StandardCharsets.UTF_8)};
    }

    /** The text of the first element with this local name, any prefix. */
    private static String element(String xml, String local) {
        Matcher m = Pattern.compile("<(?:\\w+:)?" + local + ">([^<]*)</(?:\\w+:)?" + local + ">").matcher(xml);
        return m.find() ? m.group(1) : null;
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }
}
