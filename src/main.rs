//! The `idbridge` command line: parse arguments, load the configuration, start telemetry, run.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Manage clients kept in the database, beside `staticClients`.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// List the users idbridge knows (created at their first login).
    #[command(subcommand)]
    Users(UsersCommand),
    /// End users' sign-ins.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Debug tokens issued by idbridge.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the audit trail: sign-ins, tokens, revocations, administrative changes.
    Audit(AuditArgs),
    /// Print the identity-provider configuration to paste into KubeSphere 3 or 4.
    KubesphereConfig(idbridge::kubesphere::KubesphereConfigArgs),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Args)]
struct AuditArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// How far back to look, as a duration such as 1h, 30m or 168h.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Only events of this user (username or sub).
    #[arg(long)]
    user: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new signing key now. It is published at once and signs after two minutes,
    /// once every replica serves it; older keys stay published until their tokens expire.
    Rotate(ConfigArgs),
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// List static and database clients (never their secrets).
    List(ConfigArgs),
    /// Register a client in the database; a confidential client's secret is printed once.
    Add(AddClientArgs),
    /// Remove a database client (static clients are changed in the configuration file).
    Remove(RemoveClientArgs),
}

#[derive(Debug, Args)]
struct AddClientArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The client id (`client_id`).
    #[arg(long)]
    id: String,
    /// The name shown on the login and consent pages (defaults to the id).
    #[arg(long)]
    name: Option<String>,
    /// An allowed redirect URI, matched exactly (repeat for several).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// An allowed post-logout redirect URI (repeat for several).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// A public client (a native or browser application): no secret, PKCE required.
    #[arg(long)]
    public: bool,
    /// A scope used when the request names none (repeat for several).
    #[arg(long = "default-scope", value_name = "SCOPE")]
    default_scopes: Vec<String>,
    /// Do not ask users to approve this client.
    #[arg(long)]
    skip_approval: bool,
    /// Restrict logins to this connector id (repeat for several; default: all).
    #[arg(long = "allowed-connector", value_name = "CONNECTOR")]
    allowed_connectors: Vec<String>,
}

#[derive(Debug, Args)]
struct RemoveClientArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The id of the database client to remove.
    #[arg(long)]
    id: String,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List users: subject, username, connector, email, last login.
    List(ConfigArgs),
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Sign a user out everywhere: delete their browser sessions, revoke their refresh tokens.
    Revoke(RevokeSessionsArgs),
}

#[derive(Debug, Args)]
struct RevokeSessionsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The user's username or subject (`sub`).
    #[arg(long, value_name = "NAME")]
    user: String,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Decode a token, verify it against the issuer's JWKS and explain what is wrong with it.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The token (a `Bearer ` prefix is ignored); `-` reads it from standard input, which keeps
    /// it out of the shell history.
    token: String,
    /// The issuer URL, as in the discovery document. Defaults to `issuer` of --config.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Configuration file to take the issuer from when --issuer is not given.
    #[arg(short, long, env = "IDBRIDGE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// What the token must be.
    #[arg(long, value_enum, default_value_t = ExpectedKind::Access)]
    expect: ExpectedKind,
    /// Also require this audience (a client id) in `aud`.
    #[arg(long, value_name = "CLIENT_ID")]
    audience: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExpectedKind {
    /// An access token (`typ: at+jwt`), as a resource server receives it.
    Access,
    /// An ID token (`typ: JWT`), as a relying party receives it.
    Id,
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
        Command::Clients(ClientsCommand::List(args)) => clients_list(&args.config),
        Command::Clients(ClientsCommand::Add(args)) => clients_add(args),
        Command::Clients(ClientsCommand::Remove(args)) => clients_remove(&args),
        Command::Users(UsersCommand::List(args)) => users_list(&args.config),
        Command::Sessions(SessionsCommand::Revoke(args)) => sessions_revoke(&args),
        Command::Audit(args) => audit(&args),
        Command::KubesphereConfig(args) => kubesphere_config(&args),
        Command::Keys(KeysCommand::Rotate(args)) => keys_rotate(&args),
        Command::Token(TokenCommand::Inspect(args)) => token_inspect(args),
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
            // A connector may name its own callback (`redirectURI`, e.g. behind a proxy).
            let own = connector
                .config
                .get("redirectURI")
                .and_then(|v| v.as_str())
                .unwrap_or(&callback);
            let _ = writeln!(out, "    callback URL to register upstream: {own}");
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
    let kubesphere = idbridge::kubesphere::kubesphere_warnings(config);
    if !kubesphere.is_empty() {
        let _ = writeln!(out, "\nKubeSphere warnings:");
        for warning in &kubesphere {
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

/// A small runtime for the one-shot commands.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// Loads the configuration and opens its storage, for the admin commands.
async fn open_admin(
    path: &Path,
) -> Result<(Config, std::sync::Arc<dyn idbridge::storage::Storage>), ExitCode> {
    let config = load_config(path)?;
    match idbridge::app::open_storage(&config).await {
        Ok(storage) => Ok((config, storage)),
        Err(err) => {
            eprintln!(
                "error: cannot open storage {}: {}",
                config.storage.describe(),
                error_chain(err.as_ref())
            );
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

fn admin_failed(err: &idbridge::admin::AdminError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_FAILURE)
}

fn now() -> i64 {
    idbridge::clock::Clock::system().now()
}

fn clients_list(path: &Path) -> ExitCode {
    let run = async {
        let (config, storage) = open_admin(path).await?;
        let clients = idbridge::admin::list_clients(&config, storage.as_ref())
            .await
            .map_err(|e| admin_failed(&e))?;
        print!("{}", idbridge::admin::render_clients(&clients));
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

fn clients_add(args: AddClientArgs) -> ExitCode {
    let new = idbridge::admin::NewClient {
        id: args.id,
        name: args.name,
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        public: args.public,
        default_scopes: args.default_scopes,
        skip_approval: args.skip_approval,
        allowed_connectors: args.allowed_connectors,
    };
    let path = args.config.config;
    let run = async {
        let (config, storage) = open_admin(&path).await?;
        let added = idbridge::admin::add_client(&config, storage.as_ref(), new, now())
            .await
            .map_err(|e| admin_failed(&e))?;
        for warning in &added.warnings {
            eprintln!("warning: {warning}");
        }
        let client = &added.client;
        let kind = if client.public {
            "public"
        } else {
            "confidential"
        };
        println!("created {kind} client {:?} in the database", client.id);
        println!("client_id:     {}", client.id);
        if let Some(secret) = &added.secret {
            println!("client_secret: {secret}");
            println!();
            println!(
                "Save the secret now: it is shown only this once. idbridge keeps only a keyed \
                 hash of it, so it cannot be shown again; to replace it, remove the client and \
                 add it again."
            );
        } else {
            println!("(public client: no secret; it must use PKCE)");
        }
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

fn clients_remove(args: &RemoveClientArgs) -> ExitCode {
    let run = async {
        let (config, storage) = open_admin(&args.config.config).await?;
        idbridge::admin::remove_client(&config, storage.as_ref(), &args.id)
            .await
            .map_err(|e| admin_failed(&e))?;
        println!("removed client {:?}", args.id);
        println!(
            "It can no longer sign users in, authenticate or refresh; access tokens already \
             issued to it stay valid until they expire."
        );
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

fn users_list(path: &Path) -> ExitCode {
    let run = async {
        let (_config, storage) = open_admin(path).await?;
        let users = idbridge::admin::list_users(storage.as_ref())
            .await
            .map_err(|e| admin_failed(&e))?;
        print!("{}", idbridge::admin::render_users(&users));
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

fn sessions_revoke(args: &RevokeSessionsArgs) -> ExitCode {
    let run = async {
        let (config, storage) = open_admin(&args.config.config).await?;
        let done =
            idbridge::admin::revoke_user_sessions(&config, storage.as_ref(), &args.user, now())
                .await
                .map_err(|e| admin_failed(&e))?;
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        println!(
            "user {} (sub {}, connector {})",
            done.user.username, done.user.id, done.user.connector_id
        );
        println!(
            "ended {} browser session{}: the next login asks for credentials again",
            done.sessions,
            plural(done.sessions)
        );
        println!(
            "revoked {} refresh token{}",
            done.refresh_tokens,
            plural(done.refresh_tokens)
        );
        println!(
            "\nAccess tokens already issued stay valid until they expire (at most {}, \
             expiry.accessTokens) for services that validate them offline with the JWKS; \
             idbridge's userinfo and introspection refuse those issued with a revoked refresh \
             token. The user can sign in again: block them upstream to keep them out.",
            idbridge::config::format_duration(config.expiry.access_tokens)
        );
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

fn audit(args: &AuditArgs) -> ExitCode {
    let Some(window) = idbridge::config::parse_duration(&args.since) else {
        eprintln!(
            "error: --since {:?} is not a duration such as 1h or 30m",
            args.since
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let run = async {
        let (_config, storage) = open_admin(&args.config.config).await?;
        let user_id = match &args.user {
            None => None,
            Some(name) => Some(
                idbridge::admin::find_user(storage.as_ref(), name)
                    .await
                    .map_err(|e| admin_failed(&e))?
                    .id,
            ),
        };
        let since = now() - window.as_secs() as i64;
        let events = storage
            .list_audit_events(since, user_id.as_deref(), args.limit)
            .await
            .map_err(|e| {
                eprintln!("error: cannot read the audit trail: {e}");
                ExitCode::from(EXIT_FAILURE)
            })?;
        println!(
            "{:<23}  {:<24}  {:<32}  {:<20}  {:<12}  DETAIL",
            "TIME (UTC)", "EVENT", "USER", "CLIENT", "CONNECTOR"
        );
        for e in &events {
            println!(
                "{:<23}  {:<24}  {:<32}  {:<20}  {:<12}  {}",
                idbridge::admin::utc(e.at),
                e.kind,
                e.user_id.as_deref().unwrap_or("-"),
                e.client_id.as_deref().unwrap_or("-"),
                e.connector_id.as_deref().unwrap_or("-"),
                e.detail.as_deref().unwrap_or("")
            );
        }
        if events.len() as u32 == args.limit {
            println!(
                "(showing the first {} events; use --limit for more)",
                args.limit
            );
        }
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

fn kubesphere_config(args: &idbridge::kubesphere::KubesphereConfigArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match idbridge::kubesphere::kubesphere_config_command(&config, args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn keys_rotate(args: &ConfigArgs) -> ExitCode {
    let run = async {
        let (config, storage) = open_admin(&args.config).await?;
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::from(EXIT_FAILURE)
        };
        let keys = idbridge::app::load_keys(&config, storage.as_ref(), now())
            .await
            .map_err(failed)?;
        keys.force_rotation(storage.as_ref(), now())
            .await
            .map_err(|e| failed(e.into()))?;
        println!(
            "created a new signing key: published now, used for signing in {} seconds; every \
             replica picks it up within {} seconds",
            idbridge::oidc::keys::PUBLISH_AHEAD,
            idbridge::oidc::keys::RELOAD_INTERVAL
        );
        Ok(ExitCode::SUCCESS)
    };
    block_on(run).and_then(|r| r).unwrap_or_else(|code| code)
}

/// Seconds allowed for each request to the issuer.
const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn token_inspect(args: InspectArgs) -> ExitCode {
    use idbridge::inspect::{Expectations, Problem, Report, TokenKind};

    let token = if args.token == "-" {
        let mut text = String::new();
        if let Err(err) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            eprintln!("error: cannot read the token from standard input: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
        text
    } else {
        args.token
    };
    let issuer = match (args.issuer, &args.config) {
        (Some(issuer), _) => issuer,
        (None, Some(path)) => match Config::load(path) {
            Ok(config) => config.issuer,
            Err(errors) => {
                print_errors(path, &errors.0);
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        (None, None) => {
            eprintln!("error: give the issuer with --issuer URL or a configuration with --config");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let expect = Expectations {
        kind: match args.expect {
            ExpectedKind::Access => TokenKind::Access,
            ExpectedKind::Id => TokenKind::Id,
        },
        audience: args.audience,
    };
    let fetched = block_on(fetch_issuer_documents(&issuer));
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(code) => return code,
    };
    let now = now();
    let report = match fetched {
        Ok((discovery, jwks)) => {
            if let Some(published) = discovery.get("issuer").and_then(|v| v.as_str())
                && published != issuer
            {
                eprintln!(
                    "warning: {issuer} publishes the issuer {published:?}; tokens are checked \
                     against the published value"
                );
            }
            idbridge::inspect::inspect_with(&token, &discovery, &jwks, now, &expect)
        }
        Err(reason) => Report::unverified(&token, Problem::BadIssuerDocument(reason), now),
    };
    print!("{}", report.render());
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Fetches the discovery document of `issuer` and the JWKS it points to.
async fn fetch_issuer_documents(
    issuer: &str,
) -> Result<(serde_json::Value, serde_json::Value), String> {
    let http = reqwest::Client::builder()
        .timeout(INSPECT_TIMEOUT)
        .connect_timeout(INSPECT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery = fetch_json(&http, &discovery_url).await?;
    let jwks_uri = discovery
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{discovery_url} has no jwks_uri"))?;
    let jwks = fetch_json(&http, jwks_uri).await?;
    Ok((discovery, jwks))
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {}", error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    resp.json()
        .await
        .map_err(|e| format!("{url} did not answer JSON: {e}"))
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
