// Shared by the Java client programs (compiled with each of them): the password-grant form
// from the GS_* environment, the extra steps' payload, and the bits of JSON they read and write.

import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.StringJoiner;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

final class ClientSupport {
    static final int ECHO_LEN = 1024 * 1024;
    static final int GET_LEN = 65536;

    private ClientSupport() {}

    /** The password grant of the GS_* credentials, form-encoded as clients send it. */
    static String passwordForm() {
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
        return body.toString();
    }

    /** ECHO_LEN random bytes for the POST to /echo. */
    static byte[] echoPayload() {
        byte[] payload = new byte[ECHO_LEN];
        new SecureRandom().nextBytes(payload);
        return payload;
    }

    static String sha256(byte[] bytes) throws Exception {
        StringBuilder hex = new StringBuilder();
        for (byte b : MessageDigest.getInstance("SHA-256").digest(bytes)) {
            hex.append(String.format("%02x", b & 0xff));
        }
        return hex.toString();
    }

    /** A string field of a flat JSON object (the token response), unescaped enough for URLs and tokens. */
    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(name) + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").matcher(json);
        if (!m.find()) {
            throw new IllegalStateException("no " + name + " in the token response: " + json);
        }
        return m.group(1).replace("\\/", "/");
    }

    /** A JSON string (or null). */
    static String quote(String s) {
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
