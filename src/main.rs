//! The `grantshift` command: parse arguments, load the config, set up logging, and run until
//! SIGTERM/SIGINT.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use grantshift::ca::CertificateAuthority;
use grantshift::config::Config;
use grantshift::Proxy;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "Forward proxy that upgrades Salesforce OAuth password logins in flight"
)]
struct Cli {
    /// Config file (grantshift.toml). Without it: $GRANTSHIFT_CONFIG, else built-in defaults.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr. Filter with RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Create the CA if missing; print its path, PEM, and how to trust it.
    Ca {
        /// Replace the CA with a new, name-constrained one (the old files are kept as
        /// backups); clients must then trust the new certificate.
        #[arg(long)]
        renew: bool,
    },
    /// Write a commented grantshift.toml (the -c path, default ./grantshift.toml); never
    /// overwrites a file.
    Init {
        /// Start in observe mode: a `host = "*"` rule that only watches (the migration's
        /// first step).
        #[arg(long)]
        observe: bool,
    },
    /// Validate the config and print the effective settings.
    Check,
    /// The migration report from one or more event files (several replicas merge): a
    /// summary line (sets by verdict, the share of password logins upgraded in the last 24 h,
    /// days to Salesforce's deadlines), then one row per credential set.
    Report {
        /// An events file; repeat for several replicas. Default: the config's telemetry.events.
        #[arg(long = "events", value_name = "FILE")]
        events: Vec<PathBuf>,
        /// The fleet's report: every replica's events from the shared stream on the config's
        /// [cluster] Redis, instead of events files.
        #[arg(long, conflicts_with = "events")]
        cluster: bool,
        /// Machine-readable JSON (the same as the admin server's /report).
        #[arg(long, conflicts_with = "suggest_config")]
        json: bool,
        /// Print [[credentials]] entries for the sets whose My Domain was learned.
        #[arg(long)]
        suggest_config: bool,
        /// The table uncut. Otherwise, on a terminal (or with $COLUMNS set) every line is fitted
        /// to its width, cells cut with `…`, the hint first; piped without $COLUMNS, nothing is
        /// cut.
        #[arg(long, conflicts_with_all = ["json", "suggest_config"])]
        wide: bool,
    },
    /// Probe the running grantshift's admin server (GET /readyz at proxy.admin_listen,
    /// loopback when it listens on every address) within 2 s: exit 0 when ready, else 1 with
    /// the reason. The container's HEALTHCHECK.
    Healthcheck,
    /// Print the Argon2id hash of a password for a [[credentials]] entry's password_hash. The
    /// password (with the security token appended, as the client sends it) is read from the
    /// terminal without echo, or from stdin (one line); never from the command line.
    HashPassword {
        /// Refused: a password given here would be in the shell history and the process list.
        #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
        refused: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
        Command::Ca { renew } => ca(cli.config, renew),
        Command::Init { observe } => init(cli.config, observe),
        Command::Check => check(cli.config),
        Command::Report {
            events,
            cluster,
            json,
            suggest_config,
            wide,
        } => report(cli.config, events, cluster, json, suggest_config, wide),
        Command::HashPassword { refused } => hash_password(refused.len()),
        Command::Healthcheck => healthcheck(cli.config),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grantshift: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: escape codes in a log file or a pipe are noise (and cost
    // formatting on every line).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    // Where the config came from, as Config::load chose: -c, else $GRANTSHIFT_CONFIG.
    let source = config_path
        .clone()
        .or_else(|| std::env::var_os(grantshift::config::CONFIG_ENV).map(PathBuf::from))
        .map_or_else(
            || "built-in defaults".to_owned(),
            |p| p.display().to_string(),
        );
    // Rules from the file: the built-in default is said in words instead.
    let rules = if config.rollout_is_default {
        0
    } else {
        config.rollout.len()
    };
    let default_rollout = config.rollout_is_default;
    let credentials = config.credentials.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.proxy.listen;
        // Installed before anything listens, so an early SIGHUP reloads instead of killing
        // the process (the default action).
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        // And SIGTERM/SIGINT before start-up work (the CA, the events file): one that comes
        // early is kept and shuts down gracefully once serving starts, instead of killing
        // the process with the default action.
        let shutdown = shutdown_signal()?;
        let proxy = Proxy::new(config)?;
        let listener = grantshift::server::bind(listen)
            .with_context(|| format!("proxy.listen: cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "proxy listening");
        let mut listeners = format!("proxy {addr}");
        if let Some(admin) = proxy.start_admin().await? {
            tracing::info!(addr = %admin, "admin listening");
            listeners += &format!(", admin {admin}");
        }
        if let Some(tls) = proxy.start_tls_listener().await? {
            tracing::info!(addr = %tls, "transparent TLS listening");
            listeners += &format!(", tls {tls}");
        }
        // What the built-in default does, said before the start-up line (which ends start-up).
        if default_rollout {
            tracing::info!("{}", grantshift::config::RolloutRule::DEFAULT_IN_WORDS);
        }
        // One line that says what this process is: which build, which config, where.
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %source,
            listeners = %listeners,
            rollout_rules = rules,
            credentials,
            "grantshift started"
        );
        tokio::spawn(reload_on_sighup(hup, config_path, proxy.reloader()));
        proxy.serve(listener, shutdown).await?;
        Ok(())
    })
}

fn healthcheck(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let healthy = grantshift::healthcheck::check(
        &config.proxy.admin_listen,
        grantshift::healthcheck::TIMEOUT,
    )
    .map_err(anyhow::Error::msg)?;
    println!("{healthy}");
    Ok(())
}

/// SIGHUP re-reads the config file; an invalid file keeps the running config.
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    path: Option<PathBuf>,
    reloader: grantshift::Reloader,
) {
    while hup.recv().await.is_some() {
        match Config::load(path.as_deref()) {
            Ok(new) => reloader.apply(new),
            Err(e) => reloader.failed(&e),
        }
    }
}

/// SIGTERM (service managers, `docker stop`) or SIGINT (Ctrl-C). The handlers are installed
/// when this is called; the future resolves on the first of them, even one that came before it
/// was first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn ca(config: Option<PathBuf>, renew: bool) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let permitted = grantshift::ca::permitted_domains(&config.intercept.hosts);
    let renewed = if renew {
        Some(grantshift::ca::renew(
            &config.ca.cert,
            &config.ca.key,
            &permitted,
        )?)
    } else {
        None
    };
    let ca = CertificateAuthority::load_or_create(
        &config.ca.cert,
        &config.ca.key,
        &permitted,
        Arc::new(rustls::crypto::ring::default_provider()),
    )?;
    for warning in ca.warnings(&config.intercept.hosts) {
        eprintln!("grantshift: warning: {warning}");
    }
    let path = ca.cert_path().display().to_string();
    if let Some(renewed) = renewed {
        let kept = [
            ("certificate", &renewed.cert_backup),
            ("key", &renewed.key_backup),
        ]
        .into_iter()
        .filter_map(|(what, b)| {
            b.as_ref()
                .map(|b| format!("  old {what}: {}\n", b.display()))
        })
        .collect::<String>();
        let kept = if kept.is_empty() {
            "There was no CA before.\n".to_string()
        } else {
            format!("The old files are kept:\n{kept}")
        };
        out(&format!(
            "grantshift: created a new CA in place of the old one, constrained to: {}\n{kept}\
             Every client must trust the new certificate again (the old one no longer signs \
             grantshift's certificates), and a running grantshift must be restarted to use it \
             (SIGHUP does not reload the CA).\n\n",
            ca.info().permitted_dns.join(", ")
        ))?;
    }
    out(&format!("grantshift CA certificate: {path}\n\n"))?;
    out(ca.cert_pem())?;
    out(&format!(
        "
Clients must trust this certificate (only the certificate: never copy the key).

  curl:          curl -x http://127.0.0.1:3128 --cacert {path} https://login.salesforce.com/
  Python:        export REQUESTS_CA_BUNDLE={path}   (requests; also CURL_CA_BUNDLE)
  Node.js:       export NODE_EXTRA_CA_CERTS={path}
  Java:          keytool -importcert -noprompt -storetype PKCS12 -alias grantshift \\
                   -file {path} -keystore grantshift-trust.p12 -storepass changeit
                 then run with -Djavax.net.ssl.trustStore=grantshift-trust.p12 \\
                   -Djavax.net.ssl.trustStorePassword=changeit -Djavax.net.ssl.trustStoreType=PKCS12
  Debian/Ubuntu: sudo cp {path} /usr/local/share/ca-certificates/grantshift-ca.crt \\
                   && sudo update-ca-certificates

Then point the client at the proxy: export HTTPS_PROXY=http://127.0.0.1:3128
"
    ))
}

/// The same checks `run` makes before it creates anything ([`grantshift::preflight`]), then
/// the effective settings. Warnings go to stderr; they do not fail the check.
/// The commented config `init` writes: the repository's `grantshift.example.toml`, so the
/// two cannot drift.
const EXAMPLE_CONFIG: &str = include_str!("../grantshift.example.toml");
/// The observe rule as the example has it (commented out), and as `init --observe` writes it.
const OBSERVE_RULE_OFF: &str = "# [[rollout]]\n# host = \"*\"\n# mode = \"observe\"\n";
const OBSERVE_RULE_ON: &str = "[[rollout]]\nhost = \"*\"\nmode = \"observe\"\n";

/// The text `init` writes.
fn init_text(observe: bool) -> String {
    assert!(
        EXAMPLE_CONFIG.contains(OBSERVE_RULE_OFF),
        "grantshift.example.toml has the commented observe rule"
    );
    if observe {
        EXAMPLE_CONFIG.replacen(OBSERVE_RULE_OFF, OBSERVE_RULE_ON, 1)
    } else {
        EXAMPLE_CONFIG.to_owned()
    }
}

fn init(config: Option<PathBuf>, observe: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let path = config.unwrap_or_else(|| PathBuf::from("grantshift.toml"));
    // create_new: an existing file (or a link to one) is never overwritten.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| {
            format!(
                "init: cannot create {} (an existing file is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(init_text(observe).as_bytes())
        .with_context(|| format!("init: writing {}", path.display()))?;
    let mode = if observe { " (observe mode)" } else { "" };
    println!("wrote {}{mode}", path.display());
    println!(
        "next: grantshift check -c {0}; grantshift run -c {0}",
        path.display()
    );
    Ok(())
}

fn check(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let checked = grantshift::preflight::run(&config)?;
    for warning in &checked.warnings {
        eprintln!("grantshift: warning: {warning}");
    }
    let ca_state = match &checked.ca {
        Some(info) if info.permitted_dns.is_empty() => format!(
            "present, no name constraints, valid until {}",
            info.not_after.date()
        ),
        Some(info) => format!(
            "present, constrained to {}, valid until {}",
            info.permitted_dns.join(", "),
            info.not_after.date()
        ),
        None => "absent: created on first start".into(),
    };
    let default_rollout = if config.rollout_is_default {
        format!("# {}\n", grantshift::config::RolloutRule::DEFAULT_IN_WORDS)
    } else {
        String::new()
    };
    out(&format!(
        "# config OK (CA {ca_state}; {} learned password verifiers); effective settings:\n{default_rollout}{}",
        checked.learned_verifiers,
        config.to_toml()
    ))
}

fn report(
    config: Option<PathBuf>,
    mut files: Vec<PathBuf>,
    cluster: bool,
    json: bool,
    suggest_config: bool,
    wide: bool,
) -> anyhow::Result<()> {
    // The config is read when it names the events file or is named itself (-c): it gives
    // telemetry.report_max_sets.
    let mut max_sets = grantshift::config::DEFAULT_REPORT_MAX_SETS;
    // With the config, the report also says where each set's password verifier comes from.
    let mut verifiers = None;
    let mut from_cluster = None;
    if files.is_empty() || config.is_some() {
        let config = Config::load(config.as_deref())?;
        if cluster {
            anyhow::ensure!(
                config.cluster.enabled(),
                "--cluster: the config names no cluster.redis"
            );
            from_cluster = Some(config.cluster.clone());
        }
        max_sets = config.telemetry.report_max_sets;
        match grantshift::verifiers::Store::load(&config.state.dir) {
            Ok(store) => verifiers = Some((config.clone(), store)),
            Err(e) => {
                eprintln!("grantshift: warning: {e}; the report leaves out the password verifiers")
            }
        }
        if files.is_empty() && !cluster {
            anyhow::ensure!(
                !matches!(config.telemetry.events.as_str(), "" | "-"),
                "telemetry.events is not a file: name one with --events FILE"
            );
            files.push(PathBuf::from(config.telemetry.events));
        }
    }
    let mut builder = grantshift::telemetry::report::ReportBuilder::new(max_sets);
    match from_cluster {
        Some(cluster) => fleet_events(&cluster, |e| {
            builder.add(&e);
        })?,
        None => {
            let (events, bad) = grantshift::telemetry::events::read_event_files(&files)?;
            if bad > 0 {
                eprintln!("grantshift: skipped {bad} line(s) that are not events");
            }
            events.iter().for_each(|e| {
                builder.add(e);
            });
        }
    }
    let report = match &verifiers {
        Some((config, store)) => {
            let view = grantshift::verifiers::view(config, store);
            builder.report_with(Some(&view))
        }
        None => builder.report(),
    };
    let summary = grantshift::telemetry::summary::summary(&report, time::OffsetDateTime::now_utc());
    if json {
        out(&grantshift::telemetry::render::report_json(
            &report, &summary,
        ))
    } else if suggest_config {
        out(&grantshift::telemetry::render::suggested_credentials(
            &report,
        ))
    } else {
        let width = if wide { None } else { table_width() };
        out(&grantshift::telemetry::render::table(
            &report, &summary, width,
        ))
    }
}

/// Every event of the fleet's shared stream (`grantshift report --cluster`), oldest first.
fn fleet_events(
    config: &grantshift::config::ClusterConfig,
    each: impl FnMut(grantshift::telemetry::events::Event),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let metrics = grantshift::cluster::ClusterMetrics::default();
        let cluster = grantshift::cluster::Cluster::start(config, metrics)
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("--cluster: the config names no cluster.redis"))?;
        let mut up = cluster.subscribe();
        let wait = std::time::Duration::from_secs(5).max(config.timeout * 4);
        anyhow::ensure!(
            matches!(
                tokio::time::timeout(wait, up.wait_for(|up| *up)).await,
                Ok(Ok(_))
            ),
            "--cluster: Redis at cluster.redis does not answer"
        );
        grantshift::telemetry::shared::read_all(&cluster, each)
            .await
            .ok_or_else(|| {
                anyhow::anyhow!("--cluster: Redis stopped answering while the stream was read")
            })?;
        Ok(())
    })
}

/// How wide `grantshift report`'s table may be: `$COLUMNS` when set to a number, else the
/// terminal's width when stdout is one; else (a pipe, a file) no limit, so nothing is cut.
fn table_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(columns);
    }
    let stdout = std::io::stdout();
    if !std::io::IsTerminal::is_terminal(&stdout) {
        return None;
    }
    terminal_size::terminal_size_of(&stdout).map(|(terminal_size::Width(w), _)| usize::from(w))
}

/// `grantshift hash-password`: the password from the terminal (asked twice, without echo) or
/// from stdin (one line, its line ending removed); only the hash on stdout.
fn hash_password(arguments: usize) -> anyhow::Result<()> {
    use grantshift::password::{Cost, Password, Verifier};
    use std::io::{IsTerminal, Read};
    use zeroize::Zeroizing;
    anyhow::ensure!(
        arguments == 0,
        "hash-password takes no argument: it reads the password from the terminal, or from \
         stdin (a password on the command line would be in the shell history and the process list)"
    );
    let password = if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password("Password (with the security token appended): ")
                .context("reading the password from the terminal")?,
        );
        let again = Zeroizing::new(
            rpassword::prompt_password("The same again: ")
                .context("reading the password from the terminal")?,
        );
        anyhow::ensure!(
            *first == *again,
            "the two passwords differ; nothing was hashed"
        );
        first
    } else {
        let mut input = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from stdin")?;
        let line = input
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&input);
        anyhow::ensure!(
            !line.contains('\n'),
            "stdin holds more than one line: give the password alone"
        );
        Zeroizing::new(line.to_owned())
    };
    anyhow::ensure!(
        !password.is_empty(),
        "the password is empty; nothing was hashed"
    );
    let verifier = Verifier::hash(&Password::new(&password), Cost::OWASP);
    out(&format!("{}\n", verifier.as_phc()))
}

/// Write a command's output to stdout. A reader that has gone (`grantshift check | head -1`)
/// ends the output quietly, as it does for other command-line tools, instead of a panic.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
