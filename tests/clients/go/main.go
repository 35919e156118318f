// Go's net/http (standard library only) logging in with the OAuth password grant through
// grantshift, then making one REST call with the token at the instance URL it got.
//
// The proxy comes from HTTPS_PROXY (http.ProxyFromEnvironment, which skips loopback URLs: ours
// are Salesforce names) and grantshift's CA from SSL_CERT_FILE (crypto/x509 reads it on Linux),
// as an operator would set them. The transport is http.DefaultTransport, whose TLS config is
// not customized, so it offers h2 by ALPN; the *_http_version fields are resp.Proto
// ("HTTP/2.0", "HTTP/1.1"). Built with `go build` and run by tests/real_clients.rs; prints one
// JSON line (see tests/common/clients.rs). Usage: gsclient LOGIN_URL API_PATH
//
// With GS_EXTRA=1 it then also POSTs 1 MiB of random bytes (application/octet-stream, with a
// Content-Length) to LOGIN_URL/echo and GETs LOGIN_URL/bytes?n=65536 with the same client;
// those run even when the login fails (an error is then recorded as login_error).
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
)

const (
	echoLen = 1024 * 1024
	getLen  = 65536
)

var client = &http.Client{
	Transport: http.DefaultTransport,
	Timeout:   60 * time.Second,
	// Report a redirect as it is rather than following it.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// do sends req and reads the whole response body.
func do(req *http.Request) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func loginAndRestCall(loginURL, apiPath string, out map[string]interface{}) error {
	form := url.Values{
		"grant_type":    {"password"},
		"client_id":     {os.Getenv("GS_CLIENT_ID")},
		"client_secret": {os.Getenv("GS_CLIENT_SECRET")},
		"username":      {os.Getenv("GS_USERNAME")},
		"password":      {os.Getenv("GS_PASSWORD")},
	}
	req, err := http.NewRequest("POST", loginURL+"/services/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := do(req)
	if err != nil {
		return fmt.Errorf("token request: %w", err)
	}
	out["token_status"] = resp.StatusCode
	out["token_http_version"] = resp.Proto
	out["token_body"] = string(body)
	if resp.StatusCode != 200 {
		return nil
	}
	var token struct {
		AccessToken string `json:"access_token"`
		InstanceURL string `json:"instance_url"`
	}
	if err := json.Unmarshal(body, &token); err != nil {
		return fmt.Errorf("token response is not JSON: %w", err)
	}
	out["access_token"] = token.AccessToken
	out["instance_url"] = token.InstanceURL
	req, err = http.NewRequest("GET", token.InstanceURL+apiPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token.AccessToken)
	resp, body, err = do(req)
	if err != nil {
		return fmt.Errorf("REST call: %w", err)
	}
	out["data_status"] = resp.StatusCode
	out["data_http_version"] = resp.Proto
	out["data_body"] = string(body)
	return nil
}

func extraSteps(loginURL string, out map[string]interface{}) {
	payload := make([]byte, echoLen)
	if _, err := rand.Read(payload); err != nil {
		out["echo_error"] = err.Error()
		return
	}
	out["echo_sent_sha256"] = sha256Hex(payload)
	req, err := http.NewRequest("POST", loginURL+"/echo", bytes.NewReader(payload))
	if err == nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		var resp *http.Response
		var body []byte
		if resp, body, err = do(req); err == nil {
			out["echo_status"] = resp.StatusCode
			out["echo_http_version"] = resp.Proto
			out["echo_body"] = string(body)
		}
	}
	if err != nil {
		out["echo_error"] = err.Error()
	}

	req, err = http.NewRequest("GET", fmt.Sprintf("%s/bytes?n=%d", loginURL, getLen), nil)
	if err == nil {
		var resp *http.Response
		var body []byte
		if resp, body, err = do(req); err == nil {
			out["get_status"] = resp.StatusCode
			out["get_http_version"] = resp.Proto
			out["get_sha256"] = sha256Hex(body)
			out["get_x_sha256"] = resp.Header.Get("x-sha256")
		}
	}
	if err != nil {
		out["get_error"] = err.Error()
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gsclient LOGIN_URL API_PATH")
		os.Exit(2)
	}
	loginURL, apiPath := os.Args[1], os.Args[2]
	out := map[string]interface{}{"client": "go-net-http/" + runtime.Version()}
	if os.Getenv("GS_EXTRA") == "1" {
		if err := loginAndRestCall(loginURL, apiPath, out); err != nil {
			out["login_error"] = err.Error()
		}
		extraSteps(loginURL, out)
	} else if err := loginAndRestCall(loginURL, apiPath, out); err != nil {
		fmt.Fprintf(os.Stderr, "gsclient: %v\n", err)
		os.Exit(1)
	}
	line, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gsclient: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}
