//! The `portcullis` command: run | check | secret | healthcheck | demo.

mod healthcheck;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// An authentication sidecar: signs users in with OpenID Connect and passes
/// their identity to the app behind it in trusted headers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file [default: ./config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default)
    Run,
    /// Validate the configuration and print it resolved, secrets redacted
    Check,
    /// Print a fresh random session secret
    Secret,
    /// Exit 0 if the running proxy answers GET /oauth2/healthz with 200
    /// (for container probes); the address comes from the configuration
    Healthcheck {
        /// Probe this URL instead of the configured listener
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Start a demo identity provider, a demo app and the proxy in front of it
    Demo {
        /// Where the proxy listens; open this address in a browser
        #[arg(long, default_value = "127.0.0.1:4180")]
        listen: std::net::SocketAddr,
    },
}

/// sysexits EX_USAGE: the configuration is wrong.
const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, named) = match cli.config {
        Some(p) => (p, true),
        None => (PathBuf::from("config.toml"), false),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Secret => {
            println!("{}", portcullis::config::generate_secret());
            ExitCode::SUCCESS
        }
        Command::Check => {
            portcullis::init_tracing(&Default::default());
            match portcullis::config::load(&path, named) {
                Ok(config) => match toml::to_string(&config) {
                    Ok(resolved) => {
                        print!("{resolved}");
                        print!("{}", config.registration_notes());
                        eprintln!("configuration is valid");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("configuration is valid, but cannot be printed: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprint!("{e}");
                    ExitCode::from(EX_CONFIG)
                }
            }
        }
        Command::Healthcheck { url } => {
            let url = match url {
                Some(url) => url,
                None => match portcullis::config::load(&path, named) {
                    Ok(c) if c.server.tls_cert.is_some() => {
                        eprintln!(
                            "portcullis healthcheck: server.tls_cert is set and the probe speaks plain HTTP only; probe /oauth2/healthz with an HTTPS client"
                        );
                        return ExitCode::FAILURE;
                    }
                    Ok(c) => healthcheck::url_for(c.server.listen),
                    Err(e) => {
                        let first = e.problems.first().map_or("", String::as_str);
                        eprintln!(
                            "portcullis healthcheck: invalid configuration: {first} (`portcullis check` lists every problem)"
                        );
                        return ExitCode::FAILURE;
                    }
                },
            };
            match healthcheck::probe(&url) {
                Ok(()) => ExitCode::SUCCESS,
                Err(reason) => {
                    eprintln!("portcullis healthcheck: {reason}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            let config = match portcullis::config::load(&path, named) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            portcullis::init_tracing(&config.log);
            let source = portcullis::reload::ConfigSource { path, named };
            runtime(portcullis::run(config, source))
        }
        Command::Demo { listen } => {
            portcullis::init_tracing(&Default::default());
            runtime(portcullis::demo::run(listen))
        }
    }
}

/// One core (a pinned process, or a container limited to one CPU): a
/// current-thread runtime, which skips the work-stealing scheduler's cross-thread
/// wake-ups and cuts a signed-in request's CPU by about a third (BENCHMARKS.md).
/// More cores: a multi-thread runtime with one worker per core.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        cores => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build(),
    }
}

fn runtime(fut: impl std::future::Future<Output = Result<(), portcullis::StartError>>) -> ExitCode {
    let rt = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}
