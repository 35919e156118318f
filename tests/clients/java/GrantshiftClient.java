// Java 17's java.net.http.HttpClient logging in with the OAuth password grant through
// grantshift, then making one REST call with the token at the instance URL it got.
//
// The proxy is a ProxySelector (HttpClient ignores HTTPS_PROXY); grantshift's CA comes from a
// PKCS12 truststore built with keytool and named by -Djavax.net.ssl.trustStore. HttpClient
// offers h2 by ALPN. Compiled and run by tests/real_clients.rs; prints one JSON line (see
// tests/common/clients.rs). Usage: GrantshiftClient PROXY_HOST PROXY_PORT LOGIN_URL API_PATH
//
// With GS_EXTRA=1 it then also POSTs 1 MiB of random bytes (application/octet-stream,
// BodyPublishers.ofByteArray) to LOGIN_URL/echo and GETs LOGIN_URL/bytes?n=65536 with the same
// HttpClient; those run even when the login fails (a login that throws is then recorded as
// login_error instead of ending the program).
import java.net.InetSocketAddress;
import java.net.ProxySelector;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.StringJoiner;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class GrantshiftClient {
    private static final int ECHO_LEN = 1024 * 1024;
    private static final int GET_LEN = 65536;

    public static void main(String[] args) throws Exception {
        String proxyHost = args[0];
        int proxyPort = Integer.parseInt(args[1]);
        String loginUrl = args[2];
        String apiPath = args[3];
        boolean extra = "1".equals(System.getenv("GS_EXTRA"));

        HttpClient client = HttpClient.newBuilder()
                .proxy(ProxySelector.of(new InetSocketAddress(proxyHost, proxyPort)))
                .version(HttpClient.Version.HTTP_2)
                .connectTimeout(Duration.ofSeconds(20))
                .build();

        StringBuilder out = new StringBuilder("{");
        out.append("\"client\":").append(quote("java-httpclient/" + System.getProperty("java.version")));
        if (extra) {
            try {
                loginAndRestCall(client, loginUrl, apiPath, out);
            } catch (Exception e) {
                out.append(",\"login_error\":").append(quote(e.toString()));
            }
            extraSteps(client, loginUrl, out);
        } else {
            loginAndRestCall(client, loginUrl, apiPath, out);
        }
        out.append("}");
        System.out.println(out);
    }

    private static void loginAndRestCall(HttpClient client, String loginUrl, String apiPath, StringBuilder out)
            throws Exception {
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
        HttpRequest login = HttpRequest.newBuilder(URI.create(loginUrl + "/services/oauth2/token"))
                .timeout(Duration.ofSeconds(20))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
                .build();
        HttpResponse<String> token = client.send(login, HttpResponse.BodyHandlers.ofString());

        out.append(",\"token_status\":").append(token.statusCode());
        out.append(",\"token_http_version\":").append(quote(token.version().name()));
        out.append(",\"token_body\":").append(quote(token.body()));
        if (token.statusCode() == 200) {
            String accessToken = field(token.body(), "access_token");
            String instanceUrl = field(token.body(), "instance_url");
            out.append(",\"access_token\":").append(quote(accessToken));
            out.append(",\"instance_url\":").append(quote(instanceUrl));
            HttpRequest rest = HttpRequest.newBuilder(URI.create(instanceUrl + apiPath))
                    .timeout(Duration.ofSeconds(20))
                    .header("Authorization", "Bearer " + accessToken)
                    .GET()
                    .build();
            HttpResponse<String> data = client.send(rest, HttpResponse.BodyHandlers.ofString());
            out.append(",\"data_status\":").append(data.statusCode());
            out.append(",\"data_http_version\":").append(quote(data.version().name()));
            out.append(",\"data_body\":").append(quote(data.body()));
        }
    }

    /** The GS_EXTRA steps: a 1 MiB POST to /echo and a GET of /bytes, each recorded or its error. */
    private static void extraSteps(HttpClient client, String loginUrl, StringBuilder out) throws Exception {
        byte[] payload = new byte[ECHO_LEN];
        new SecureRandom().nextBytes(payload);
        out.append(",\"echo_sent_sha256\":").append(quote(sha256(payload)));
        try {
            HttpRequest echo = HttpRequest.newBuilder(URI.create(loginUrl + "/echo"))
                    .timeout(Duration.ofSeconds(60))
                    .header("Content-Type", "application/octet-stream")
                    .POST(HttpRequest.BodyPublishers.ofByteArray(payload))
                    .build();
            HttpResponse<String> r = client.send(echo, HttpResponse.BodyHandlers.ofString());
            out.append(",\"echo_status\":").append(r.statusCode());
            out.append(",\"echo_http_version\":").append(quote(r.version().name()));
            out.append(",\"echo_body\":").append(quote(r.body()));
        } catch (Exception e) {
            out.append(",\"echo_error\":").append(quote(e.toString()));
        }
        try {
            HttpRequest get = HttpRequest.newBuilder(URI.create(loginUrl + "/bytes?n=" + GET_LEN))
                    .timeout(Duration.ofSeconds(60))
                    .GET()
                    .build();
            HttpResponse<byte[]> r = client.send(get, HttpResponse.BodyHandlers.ofByteArray());
            out.append(",\"get_status\":").append(r.statusCode());
            out.append(",\"get_http_version\":").append(quote(r.version().name()));
            out.append(",\"get_sha256\":").append(quote(sha256(r.body())));
            out.append(",\"get_x_sha256\":").append(quote(r.headers().firstValue("x-sha256").orElse(null)));
        } catch (Exception e) {
            out.append(",\"get_error\":").append(quote(e.toString()));
        }
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
