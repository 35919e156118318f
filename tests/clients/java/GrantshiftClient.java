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
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

public final class GrantshiftClient {

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
        out.append("\"client\":").append(ClientSupport.quote("java-httpclient/" + System.getProperty("java.version")));
        if (extra) {
            try {
                loginAndRestCall(client, loginUrl, apiPath, out);
            } catch (Exception e) {
                out.append(",\"login_error\":").append(ClientSupport.quote(e.toString()));
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
        String body = ClientSupport.passwordForm();
        HttpRequest login = HttpRequest.newBuilder(URI.create(loginUrl + "/services/oauth2/token"))
                .timeout(Duration.ofSeconds(20))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
        HttpResponse<String> token = client.send(login, HttpResponse.BodyHandlers.ofString());

        out.append(",\"token_status\":").append(token.statusCode());
        out.append(",\"token_http_version\":").append(ClientSupport.quote(token.version().name()));
        out.append(",\"token_body\":").append(ClientSupport.quote(token.body()));
        if (token.statusCode() == 200) {
            String accessToken = ClientSupport.field(token.body(), "access_token");
            String instanceUrl = ClientSupport.field(token.body(), "instance_url");
            out.append(",\"access_token\":").append(ClientSupport.quote(accessToken));
            out.append(",\"instance_url\":").append(ClientSupport.quote(instanceUrl));
            HttpRequest rest = HttpRequest.newBuilder(URI.create(instanceUrl + apiPath))
                    .timeout(Duration.ofSeconds(20))
                    .header("Authorization", "Bearer " + accessToken)
                    .GET()
                    .build();
            HttpResponse<String> data = client.send(rest, HttpResponse.BodyHandlers.ofString());
            out.append(",\"data_status\":").append(data.statusCode());
            out.append(",\"data_http_version\":").append(ClientSupport.quote(data.version().name()));
            out.append(",\"data_body\":").append(ClientSupport.quote(data.body()));
        }
    }

    /** The GS_EXTRA steps: a 1 MiB POST to /echo and a GET of /bytes, each recorded or its error. */
    private static void extraSteps(HttpClient client, String loginUrl, StringBuilder out) throws Exception {
        byte[] payload = ClientSupport.echoPayload();
        out.append(",\"echo_sent_sha256\":").append(ClientSupport.quote(ClientSupport.sha256(payload)));
        try {
            HttpRequest echo = HttpRequest.newBuilder(URI.create(loginUrl + "/echo"))
                    .timeout(Duration.ofSeconds(60))
                    .header("Content-Type", "application/octet-stream")
                    .POST(HttpRequest.BodyPublishers.ofByteArray(payload))
                    .build();
            HttpResponse<String> r = client.send(echo, HttpResponse.BodyHandlers.ofString());
            out.append(",\"echo_status\":").append(r.statusCode());
            out.append(",\"echo_http_version\":").append(ClientSupport.quote(r.version().name()));
            out.append(",\"echo_body\":").append(ClientSupport.quote(r.body()));
        } catch (Exception e) {
            out.append(",\"echo_error\":").append(ClientSupport.quote(e.toString()));
        }
        try {
            HttpRequest get = HttpRequest.newBuilder(URI.create(loginUrl + "/bytes?n=" + ClientSupport.GET_LEN))
                    .timeout(Duration.ofSeconds(60))
                    .GET()
                    .build();
            HttpResponse<byte[]> r = client.send(get, HttpResponse.BodyHandlers.ofByteArray());
            out.append(",\"get_status\":").append(r.statusCode());
            out.append(",\"get_http_version\":").append(ClientSupport.quote(r.version().name()));
            out.append(",\"get_sha256\":").append(ClientSupport.quote(ClientSupport.sha256(r.body())));
            out.append(",\"get_x_sha256\":").append(ClientSupport.quote(r.headers().firstValue("x-sha256").orElse(null)));
        } catch (Exception e) {
            out.append(",\"get_error\":").append(ClientSupport.quote(e.toString()));
        }
    }
}
