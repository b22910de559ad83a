//! The `idbridge` command line: parse arguments, load the configuration, start telemetry, run.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use idbridge::config::{Config, ConfigError, LogFormat, LoggerConfig};

/// Exit status for a configuration that does not load or validate, so scripts and init
/// containers can tell it apart from a runtime failure (1).
const EXIT_CONFIG: u8 = 2;
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(name = "idbridge", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the OpenID Connect provider.
    Serve(ConfigArgs),
    /// Validate a configuration file and print the URLs to give relying parties and upstreams.
    CheckConfig(ConfigArgs),
    /// Read a password from standard input and print its argon2id hash for `staticPasswords`.
    HashPassword,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Path of the YAML configuration file.
    #[arg(short, long, env = "IDBRIDGE_CONFIG", value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args.config),
        Command::CheckConfig(args) => check_config(&args.config),
        Command::HashPassword => hash_password(),
    }
}

/// Loads and fully validates the configuration, including each connector's own settings.
/// On failure every problem has already been printed to stderr.
fn load_config(path: &Path) -> Result<Config, ExitCode> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            print_errors(path, &errors.0);
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    let connector_errors = idbridge::connectors::validate(&config);
    if !connector_errors.is_empty() {
        print_errors(path, &connector_errors);
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok(config)
}

fn print_errors(path: &Path, errors: &[ConfigError]) {
    eprintln!(
        "{}: {} configuration error{}",
        path.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for error in errors {
        eprintln!("{error}");
    }
}

fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(err) = init_tracing(&config.logger) {
        eprintln!("error: cannot start logging: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    for warning in &config.warnings {
        tracing::warn!(key = %warning.path, "configuration: {}", warning.message);
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        issuer = %config.issuer,
        storage = %config.storage.describe(),
        "starting idbridge"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(idbridge::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let chain = error_chain(err.as_ref());
            tracing::error!(error = %chain, "idbridge stopped");
            // Logging may go to a collector; make sure whoever started the process sees it too.
            eprintln!("error: {chain}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// RUST_LOG, when set, wins over `logger.level` so an operator can raise verbosity for one
/// run without editing the file.
fn init_tracing(logger: &LoggerConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|err| format!("invalid RUST_LOG {directives:?}: {err}"))?,
        // Database drivers log every statement at debug level; keep them at warn unless the
        // level names them explicitly.
        _ if logger.level.contains("sqlx") => EnvFilter::try_new(&logger.level)?,
        _ => EnvFilter::try_new(format!("{},sqlx=warn", logger.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match logger.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
}

/// Endpoints relative to the issuer, in the order an operator wires them up.
const ENDPOINTS: [(&str, &str); 10] = [
    ("discovery", "/.well-known/openid-configuration"),
    ("authorization", "/auth"),
    ("token", "/token"),
    ("JWKS", "/keys"),
    ("userinfo", "/userinfo"),
    ("end session", "/logout"),
    ("revocation", "/revoke"),
    ("introspection", "/introspect"),
    ("device authorization", "/device/code"),
    ("device verification", "/device"),
];

fn check_config(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    print!("{}", describe_config(path, &config));
    ExitCode::SUCCESS
}

fn describe_config(path: &Path, config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}: configuration is valid", path.display());
    let _ = writeln!(out, "\nissuer: {}", config.issuer);
    let _ = writeln!(out, "\nendpoints:");
    for (name, endpoint) in ENDPOINTS {
        let _ = writeln!(out, "  {name:<22} {}", config.endpoint(endpoint));
    }
    let _ = writeln!(out, "\nstorage: {}", config.storage.describe());
    let _ = writeln!(out, "\nlisten:");
    if let Some(addr) = &config.web.http {
        let _ = writeln!(out, "  http  {addr}");
    }
    if let Some(addr) = &config.web.https {
        let _ = writeln!(out, "  https {addr}");
    }

    let _ = writeln!(out, "\nconnectors:");
    if config.connectors.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let callback = config.endpoint("/callback");
    for connector in &config.connectors {
        let _ = writeln!(
            out,
            "  {} (type {}, name {:?})",
            connector.id, connector.kind, connector.name
        );
        if connector.kind == "local" {
            let _ = writeln!(out, "    password form, nothing to register upstream");
        } else {
            let _ = writeln!(out, "    callback URL to register upstream: {callback}");
        }
    }

    let _ = writeln!(out, "\nclients:");
    if config.static_clients.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for client in &config.static_clients {
        let kind = if client.public {
            "public"
        } else {
            "confidential"
        };
        let _ = writeln!(out, "  {} ({kind}, name {:?})", client.id, client.name);
        for uri in &client.redirect_uris {
            let _ = writeln!(out, "    redirect URI:             {uri}");
        }
        for uri in &client.post_logout_redirect_uris {
            let _ = writeln!(out, "    post-logout redirect URI: {uri}");
        }
        let _ = writeln!(
            out,
            "    grant types:              {}",
            client.grant_types.join(", ")
        );
        if !client.default_scopes.is_empty() {
            let _ = writeln!(
                out,
                "    default scopes:           {}",
                client.default_scopes.join(" ")
            );
        }
    }

    if config.test_login.enabled {
        let _ = writeln!(
            out,
            "\ntest login: {} (development only)",
            config.endpoint("/test-login")
        );
    }

    if !config.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for warning in &config.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    out
}

fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // The prompt goes to stderr so `idbridge hash-password > hash.txt` captures only the hash.
        eprint!("Password (it will be shown as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(err) = stdin.lock().read_line(&mut line) {
        eprintln!("error: cannot read the password from standard input: {err}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let password = line
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&line);
    if password.is_empty() {
        eprintln!("error: the password is empty");
        return ExitCode::from(EXIT_FAILURE);
    }
    match idbridge::connectors::local::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: cannot hash the password: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn check_config_lists_every_endpoint_under_the_issuer() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev.yaml");
        let config = Config::load(&path).unwrap();
        let text = describe_config(&path, &config);
        for (_, endpoint) in ENDPOINTS {
            assert!(
                text.contains(&format!("http://127.0.0.1:5556{endpoint}\n")),
                "{endpoint} missing in\n{text}"
            );
        }
        assert!(text.contains("http://127.0.0.1:5556/test-login"), "{text}");
        assert!(text.contains("demo-cli (public"), "{text}");
        assert!(text.contains("demo-app (confidential"), "{text}");
        assert!(!text.contains("demo-secret"), "{text}");
    }
}
