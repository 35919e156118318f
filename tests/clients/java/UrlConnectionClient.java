// Java's java.net.HttpURLConnection (HTTP/1.1 only: what Salesforce WSC, Data Loader and many
// older integrations use) logging in with the OAuth password grant through grantshift, then
// making one REST call with the token at the instance URL it got.
//
// The proxy comes from the -Dhttps.proxyHost / -Dhttps.proxyPort system properties, as
// operators configure WSC and Data Loader; grantshift's CA from a PKCS12 truststore built with
// keytool and named by -Djavax.net.ssl.trustStore. (Java disables Basic auth for proxy
// tunnels by default: irrelevant here, grantshift asks for none.) Compiled and run by
// tests/real_clients.rs; prints one JSON line (see tests/common/clients.rs).
// Usage: java -Dhttps.proxyHost=H -Dhttps.proxyPort=P UrlConnectionClient LOGIN_URL API_PATH
//
// With GS_EXTRA=1 it then also POSTs 1 MiB of random bytes (application/octet-stream,
// setFixedLengthStreamingMode so it streams) to LOGIN_URL/echo and GETs
// LOGIN_URL/bytes?n=65536; those run even when the login fails (a login that throws is then
// recorded as login_error instead of ending the program). The *_http_version fields are the
// version of the status line HttpURLConnection read (getHeaderField(0)).
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;

public final class UrlConnectionClient {
    private static final int TIMEOUT_MS = 60_000;

    /** What one exchange gave: status, the status line's HTTP version, headers, body. */
    private static final class Reply {
        int status;
        String version;
        HttpURLConnection conn;
        byte[] body;

        String text() {
            return new String(body, StandardCharsets.UTF_8);
        }
    }

    public static void main(String[] args) throws Exception {
        String loginUrl = args[0];
        String apiPath = args[1];
        boolean extra = "1".equals(System.getenv("GS_EXTRA"));

        StringBuilder out = new StringBuilder("{");
        out.append("\"client\":").append(ClientSupport.quote("java-httpurlconnection/" + System.getProperty("java.version")));
        if (extra) {
            try {
                loginAndRestCall(loginUrl, apiPath, out);
            } catch (Exception e) {
                out.append(",\"login_error\":").append(ClientSupport.quote(e.toString()));
            }
            extraSteps(loginUrl, out);
        } else {
            loginAndRestCall(loginUrl, apiPath, out);
        }
        out.append("}");
        System.out.println(out);
    }

    private static void loginAndRestCall(String loginUrl, String apiPath, StringBuilder out) throws Exception {
        String body = ClientSupport.passwordForm();
        Reply token = exchange("POST", loginUrl + "/services/oauth2/token",
                "application/x-www-form-urlencoded", null, body.getBytes(StandardCharsets.UTF_8));

        out.append(",\"token_status\":").append(token.status);
        out.append(",\"token_http_version\":").append(ClientSupport.quote(token.version));
        out.append(",\"token_body\":").append(ClientSupport.quote(token.text()));
        if (token.status == 200) {
            String accessToken = ClientSupport.field(token.text(), "access_token");
            String instanceUrl = ClientSupport.field(token.text(), "instance_url");
            out.append(",\"access_token\":").append(ClientSupport.quote(accessToken));
            out.append(",\"instance_url\":").append(ClientSupport.quote(instanceUrl));
            Reply data = exchange("GET", instanceUrl + apiPath, null, "Bearer " + accessToken, null);
            out.append(",\"data_status\":").append(data.status);
            out.append(",\"data_http_version\":").append(ClientSupport.quote(data.version));
            out.append(",\"data_body\":").append(ClientSupport.quote(data.text()));
        }
    }

    /** The GS_EXTRA steps: a 1 MiB POST to /echo and a GET of /bytes, each recorded or its error. */
    private static void extraSteps(String loginUrl, StringBuilder out) throws Exception {
        byte[] payload = ClientSupport.echoPayload();
        out.append(",\"echo_sent_sha256\":").append(ClientSupport.quote(ClientSupport.sha256(payload)));
        try {
            Reply echo = exchange("POST", loginUrl + "/echo", "application/octet-stream", null, payload);
            out.append(",\"echo_status\":").append(echo.status);
            out.append(",\"echo_http_version\":").append(ClientSupport.quote(echo.version));
            out.append(",\"echo_body\":").append(ClientSupport.quote(echo.text()));
        } catch (Exception e) {
            out.append(",\"echo_error\":").append(ClientSupport.quote(e.toString()));
        }
        try {
            Reply get = exchange("GET", loginUrl + "/bytes?n=" + ClientSupport.GET_LEN, null, null, null);
            out.append(",\"get_status\":").append(get.status);
            out.append(",\"get_http_version\":").append(ClientSupport.quote(get.version));
            out.append(",\"get_sha256\":").append(ClientSupport.quote(ClientSupport.sha256(get.body)));
            out.append(",\"get_x_sha256\":").append(ClientSupport.quote(get.conn.getHeaderField("x-sha256")));
        } catch (Exception e) {
            out.append(",\"get_error\":").append(ClientSupport.quote(e.toString()));
        }
    }

    /** One request on an HttpsURLConnection; a body is sent in fixed-length streaming mode. */
    private static Reply exchange(String method, String url, String contentType, String authorization, byte[] body)
            throws IOException {
        HttpURLConnection conn = (HttpURLConnection) new URL(url).openConnection();
        conn.setRequestMethod(method);
        conn.setConnectTimeout(TIMEOUT_MS);
        conn.setReadTimeout(TIMEOUT_MS);
        conn.setInstanceFollowRedirects(false);
        if (contentType != null) {
            conn.setRequestProperty("Content-Type", contentType);
        }
        if (authorization != null) {
            conn.setRequestProperty("Authorization", authorization);
        }
        if (body != null) {
            conn.setDoOutput(true);
            conn.setFixedLengthStreamingMode(body.length);
            try (OutputStream os = conn.getOutputStream()) {
                os.write(body);
            }
        }
        Reply reply = new Reply();
        reply.conn = conn;
        reply.status = conn.getResponseCode();
        String statusLine = conn.getHeaderField(0); // "HTTP/1.1 200 OK"
        reply.version = statusLine == null ? null : statusLine.split(" ", 2)[0];
        InputStream in = reply.status >= 400 ? conn.getErrorStream() : conn.getInputStream();
        if (in == null) {
            reply.body = new byte[0];
        } else {
            try (InputStream stream = in) {
                reply.body = stream.readAllBytes();
            }
        }
        return reply;
    }
}
