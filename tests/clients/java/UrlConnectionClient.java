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
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.StringJoiner;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class UrlConnectionClient {
    private static final int ECHO_LEN = 1024 * 1024;
    private static final int GET_LEN = 65536;
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
        out.append("\"client\":").append(quote("java-httpurlconnection/" + System.getProperty("java.version")));
        if (extra) {
            try {
                loginAndRestCall(loginUrl, apiPath, out);
            } catch (Exception e) {
                out.append(",\"login_error\":").append(quote(e.toString()));
            }
            extraSteps(loginUrl, out);
        } else {
            loginAndRestCall(loginUrl, apiPath, out);
        }
        out.append("}");
        System.out.println(out);
    }

    private static void loginAndRestCall(String loginUrl, String apiPath, StringBuilder out) throws Exception {
        Map<String, String> form = new LinkedHashMap<>();
        form.put("grant_type", "password");
        form.put("client_id", System.getenv("GS_CLIENT_ID"));
        form.put("client_secret", System.getenv("GS_CLIENT_SECRET"));
        form.put("username", System.getenv("GS_USERNAME"));
        form.put("password", System.getenv("GS_PASSWORD"));
        StringJoiner body = new StringJoiner("&");
        for (Map.Entry<String, String> e : form.entrySet()) {
            body.add(URLEncoder.encode(e.getKey(), StandardCharsets.UTF_8) + "="
                    + URLEncoder.encode(e.getValue(), StandardCharsets.UTF_8));
        }
        Reply token = exchange("POST", loginUrl + "/services/oauth2/token",
                "application/x-www-form-urlencoded", null, body.toString().getBytes(StandardCharsets.UTF_8));

        out.append(",\"token_status\":").append(token.status);
        out.append(",\"token_http_version\":").append(quote(token.version));
        out.append(",\"token_body\":").append(quote(token.text()));
        if (token.status == 200) {
            String accessToken = field(token.text(), "access_token");
            String instanceUrl = field(token.text(), "instance_url");
            out.append(",\"access_token\":").append(quote(accessToken));
            out.append(",\"instance_url\":").append(quote(instanceUrl));
            Reply data = exchange("GET", instanceUrl + apiPath, null, "Bearer " + accessToken, null);
            out.append(",\"data_status\":").append(data.status);
            out.append(",\"data_http_version\":").append(quote(data.version));
            out.append(",\"data_body\":").append(quote(data.text()));
        }
    }

    /** The GS_EXTRA steps: a 1 MiB POST to /echo and a GET of /bytes, each recorded or its error. */
    private static void extraSteps(String loginUrl, StringBuilder out) throws Exception {
        byte[] payload = new byte[ECHO_LEN];
        new SecureRandom().nextBytes(payload);
        out.append(",\"echo_sent_sha256\":").append(quote(sha256(payload)));
        try {
            Reply echo = exchange("POST", loginUrl + "/echo", "application/octet-stream", null, payload);
            out.append(",\"echo_status\":").append(echo.status);
            out.append(",\"echo_http_version\":").append(quote(echo.version));
            out.append(",\"echo_body\":").append(quote(echo.text()));
        } catch (Exception e) {
            out.append(",\"echo_error\":").append(quote(e.toString()));
        }
        try {
            Reply get = exchange("GET", loginUrl + "/bytes?n=" + GET_LEN, null, null, null);
            out.append(",\"get_status\":").append(get.status);
            out.append(",\"get_http_version\":").append(quote(get.version));
            out.append(",\"get_sha256\":").append(quote(sha256(get.body)));
            out.append(",\"get_x_sha256\":").append(quote(get.conn.getHeaderField("x-sha256")));
        } catch (Exception e) {
            out.append(",\"get_error\":").append(quote(e.toString()));
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

    private static String sha256(byte[] bytes) throws Exception {
        StringBuilder hex = new StringBuilder();
        for (byte b : MessageDigest.getInstance("SHA-256").digest(bytes)) {
            hex.append(String.format("%02x", b & 0xff));
        }
        return hex.toString();
    }

    /** A string field of a flat JSON object (the token response), unescaped enough for URLs and tokens. */
    private static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").matcher(json);
        if (!m.find()) {
            throw new IllegalStateException("no " + name + " in the token response: " + json);
        }
        return m.group(1).replace("\\/", "/");
    }

    /** A JSON string (or null). */
    private static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }
}
