//! Rollout policy (docs/operating.md, "Rolling out"): for a password grant, decide whether to observe it, upgrade it
//! (which flow, which host), or leave it alone because it cannot be upgraded. Pure.

use crate::config::{Config, Flow, Mode, VerifyPassword};
use crate::oauth::jwt::JwtKey;
use crate::oauth::{is_my_domain_host, SkipReason, TokenParams};
use crate::password::Verifier;
use sha2::{Digest, Sha256};

/// What happens to one password grant.
#[derive(Debug)]
pub enum Decision {
    /// Forward unchanged, record `observed` (with a reason when it was `percent` or no rule
    /// matched rather than an `observe` rule).
    Observe {
        reason: Option<&'static str>,
    },
    /// A generic login host and no My Domain to send client credentials to: forward
    /// unchanged, record `unmapped`.
    Unmapped,
    /// Cannot be upgraded faithfully: forward unchanged, record `skipped`.
    Skip(SkipReason),
    Upgrade(Upgrade),
}

#[derive(Debug, Clone)]
pub struct Upgrade {
    pub flow: Flow,
    /// The host the upgraded request goes to (a My Domain, or the original host).
    pub target_host: String,
    pub fallback: bool,
    /// For `jwt_bearer`: the signing key and the `aud` claim.
    pub jwt: Option<(JwtKey, String)>,
    /// How the password is checked before the upgrade goes out.
    pub verify: Verification,
    /// The `[[credentials]]` entry that decided it ([`Credential::fingerprint`]); `None` for
    /// an upgrade in place at a My Domain with no entry.
    ///
    /// [`Credential::fingerprint`]: crate::config::Credential#structfield.fingerprint
    pub credential: Option<[u8; 32]>,
}

/// How an upgrade's password is checked: the entry's `verify_password` and `password_hash`
/// (with no entry, an upgrade in place at a My Domain: `if_known`, the client-credentials
/// default, and no configured verifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub mode: VerifyPassword,
    /// A configured verifier wins over a learned one.
    pub configured: Option<Verifier>,
}

/// What the policy needs of a password grant.
#[derive(Debug, Clone, Copy)]
pub struct PasswordGrant<'a> {
    /// The app: the form's `client_id`, else the one in `Authorization: Basic` (`""` if
    /// neither names one).
    pub client_id: &'a str,
    pub username: &'a str,
    /// A `client_secret` in the form, or `Authorization: Basic` (which is forwarded as sent):
    /// client credentials can authenticate the app.
    pub has_client_secret: bool,
}

impl<'a> PasswordGrant<'a> {
    /// The grant as its form parameters tell it (no `Authorization` field).
    pub fn from_params(params: &'a TokenParams) -> PasswordGrant<'a> {
        PasswordGrant {
            client_id: params.get("client_id").unwrap_or(""),
            username: params.get("username").unwrap_or(""),
            has_client_secret: params.get("client_secret").is_some(),
        }
    }
}

/// Decide for a password grant sent to `request_host`.
pub fn decide(config: &Config, request_host: &str, grant: &PasswordGrant<'_>) -> Decision {
    let Some(rule) = config.rollout.iter().find(|r| r.matches(request_host)) else {
        return Decision::Observe {
            reason: Some("no_rule"),
        };
    };
    if rule.mode == Mode::Observe {
        return Decision::Observe { reason: None };
    }
    let (client_id, username) = (grant.client_id, grant.username);
    let credential = config
        .credentials
        .iter()
        .find(|c| c.matches(client_id, username));

    let (flow, target_host) = match credential {
        Some(c) => match (&c.my_domain, c.flow) {
            (Some(domain), flow) => (flow, domain.clone()),
            (None, Flow::JwtBearer) => (Flow::JwtBearer, request_host.to_string()),
            (None, Flow::ClientCredentials) if is_my_domain_host(request_host) => {
                (Flow::ClientCredentials, request_host.to_string())
            }
            (None, Flow::ClientCredentials) => return Decision::Unmapped,
        },
        // Already at a My Domain: client credentials works right there.
        None if is_my_domain_host(request_host) => {
            (Flow::ClientCredentials, request_host.to_string())
        }
        None => return Decision::Unmapped,
    };

    if bucket(client_id, username) >= rule.percent {
        return Decision::Observe {
            reason: Some("percent"),
        };
    }

    let jwt = match flow {
        Flow::JwtBearer => {
            if client_id.is_empty() {
                return Decision::Skip(SkipReason::MissingClientId);
            }
            let Some(key) = credential.and_then(|c| c.jwt_key.clone()) else {
                return Decision::Skip(SkipReason::Internal);
            };
            let audience = crate::oauth::jwt::audience(
                credential.and_then(|c| c.jwt_audience.as_deref()),
                request_host,
            );
            Some((key, audience.to_string()))
        }
        Flow::ClientCredentials => {
            if !grant.has_client_secret {
                return Decision::Skip(SkipReason::NoClientSecret);
            }
            None
        }
    };
    let verify = Verification {
        mode: credential.map_or(VerifyPassword::default_for(flow), |c| c.verify_mode()),
        configured: credential.and_then(|c| c.password_hash.clone()),
    };
    Decision::Upgrade(Upgrade {
        flow,
        target_host,
        fallback: rule.fallback,
        jwt,
        verify,
        credential: credential.map(|c| c.fingerprint),
    })
}

/// The rollout bucket of a credential set, 0..100: the first 8 bytes of
/// `SHA-256(client_id ‖ 0x00 ‖ lowercase(username))` as a big-endian integer, modulo 100.
/// Stable across restarts, replicas and versions; raising `percent` only ever adds sets.
pub fn bucket(client_id: &str, username: &str) -> u8 {
    let mut hash = Sha256::new();
    hash.update(client_id.as_bytes());
    hash.update([0u8]);
    hash.update(username.to_lowercase().as_bytes());
    let digest = hash.finalize();
    let first = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (first % 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, Path::new("/")).unwrap()
    }

    fn params(body: &str) -> TokenParams {
        TokenParams::parse(None, body.as_bytes()).unwrap()
    }

    /// `decide` for the grant in `params`, with (`basic`) or without `Authorization: Basic`.
    fn decide(config: &Config, host: &str, params: &TokenParams, basic: bool) -> Decision {
        let mut grant = PasswordGrant::from_params(params);
        grant.has_client_secret |= basic;
        super::decide(config, host, &grant)
    }

    const PW: &str =
        "grant_type=password&client_id=app&client_secret=s&username=Int%40Acme.com&password=p";

    #[test]
    fn bucket_is_stable_and_ignores_username_case() {
        // Pinned: a change here would move every credential set between buckets.
        assert_eq!(bucket("app", "int@acme.com"), bucket("app", "INT@acme.COM"));
        // Independently computed (Python hashlib) values.
        assert_eq!(bucket("", ""), 92);
        assert_eq!(bucket("3MVG9abc", "Integration@Acme.com"), 47);
        assert_eq!(
            bucket("3MVG9abc", "integration@acme.com"),
            bucket("3MVG9abc", "integration@acme.com")
        );
        assert_ne!(
            bucket("a", "b"),
            bucket("b", "a"),
            "client_id and username do not commute"
        );
    }

    #[test]
    fn buckets_spread_evenly() {
        let mut counts = [0u32; 100];
        for i in 0..10_000 {
            counts[bucket("app", &format!("user{i}@x.com")) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn mapped_username_goes_to_its_my_domain() {
        let c = config("[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\n");
        match decide(&c, "login.salesforce.com", &params(PW), false) {
            Decision::Upgrade(u) => {
                assert_eq!(u.target_host, "acme.my.salesforce.com");
                assert_eq!(u.flow, Flow::ClientCredentials);
                assert!(u.fallback);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_password_check_follows_the_entry_and_the_flow() {
        let verify_of =
            |toml: &str| match decide(&config(toml), "login.salesforce.com", &params(PW), false) {
                Decision::Upgrade(u) => u.verify,
                other => panic!("{other:?}"),
            };
        let cc = "[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\n";
        assert_eq!(
            verify_of(cc),
            Verification {
                mode: VerifyPassword::IfKnown,
                configured: None
            }
        );
        let jwt = format!(
            "[[credentials]]\nusername = \"int@acme.com\"\nflow = \"jwt_bearer\"\njwt_private_key = \"{}\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt-app.pkcs8.pem")
        );
        assert_eq!(verify_of(&jwt).mode, VerifyPassword::Required);
        assert_eq!(
            verify_of(&format!("{jwt}verify_password = \"off\"\n")).mode,
            VerifyPassword::Off
        );
        let hash = crate::password::Verifier::hash(
            &crate::password::Password::new("p"),
            crate::password::Cost {
                memory_kib: 8,
                passes: 1,
                lanes: 1,
            },
        );
        let configured = verify_of(&format!(
            "{cc}verify_password = \"required\"\npassword_hash = \"{}\"\n",
            hash.as_phc()
        ));
        assert_eq!(configured.mode, VerifyPassword::Required);
        assert_eq!(configured.configured, Some(hash));
        // In place at a My Domain with no entry: the client-credentials default.
        match decide(&config(""), "acme.my.salesforce.com", &params(PW), false) {
            Decision::Upgrade(u) => assert_eq!(u.verify.mode, VerifyPassword::IfKnown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn generic_host_without_mapping_is_unmapped_my_domain_upgrades_in_place() {
        let c = config("");
        assert!(matches!(
            decide(&c, "login.salesforce.com", &params(PW), false),
            Decision::Unmapped
        ));
        match decide(&c, "acme.my.salesforce.com", &params(PW), false) {
            Decision::Upgrade(u) => assert_eq!(u.target_host, "acme.my.salesforce.com"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_ascii_usernames_match_case_insensitively_like_the_bucket() {
        let c = config("[[credentials]]\nusername = \"Élodie@Acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\n");
        let p = params("grant_type=password&client_id=app&client_secret=s&username=%C3%A9lodie%40acme.com&password=p");
        assert!(matches!(
            decide(&c, "login.salesforce.com", &p, false),
            Decision::Upgrade(_)
        ));
        assert_eq!(
            bucket("app", "Élodie@Acme.com"),
            bucket("app", "élodie@acme.com")
        );
    }

    #[test]
    fn client_id_filter_and_observe_mode() {
        let c = config("[[credentials]]\nusername = \"int@acme.com\"\nmy_domain = \"acme.my.salesforce.com\"\nclient_id = \"other\"\n");
        assert!(matches!(
            decide(&c, "login.salesforce.com", &params(PW), false),
            Decision::Unmapped
        ));
        let c = config("[[rollout]]\nhost = \"*\"\nmode = \"observe\"\n");
        assert!(matches!(
            decide(&c, "acme.my.salesforce.com", &params(PW), false),
            Decision::Observe { reason: None }
        ));
    }

    #[test]
    fn percent_zero_observes_percent_hundred_upgrades_first_rule_wins() {
        let c = config("[[rollout]]\nhost = \"*.my.salesforce.com\"\nmode = \"upgrade\"\npercent = 0\n[[rollout]]\nhost = \"*\"\nmode = \"upgrade\"\n");
        assert!(matches!(
            decide(&c, "acme.my.salesforce.com", &params(PW), false),
            Decision::Observe {
                reason: Some("percent")
            }
        ));
        let c = config("[[rollout]]\nhost = \"login.salesforce.com\"\nmode = \"observe\"\n");
        assert!(matches!(
            decide(&c, "acme.my.salesforce.com", &params(PW), false),
            Decision::Observe {
                reason: Some("no_rule")
            }
        ));
    }

    #[test]
    fn client_credentials_needs_a_secret_or_basic_auth() {
        let c = config("");
        let no_secret = params("grant_type=password&client_id=app&username=u&password=p");
        assert!(matches!(
            decide(&c, "acme.my.salesforce.com", &no_secret, false),
            Decision::Skip(SkipReason::NoClientSecret)
        ));
        assert!(matches!(
            decide(&c, "acme.my.salesforce.com", &no_secret, true),
            Decision::Upgrade(_)
        ));
    }
}
