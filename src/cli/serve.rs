//! `cxr8 serve` (the default command): prepare the demo data set on first start, recover runs a
//! dead process left `running`, start the training worker and serve the dashboard on loopback.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::service::{self, queue::Queue};
use crate::store::Store;
use crate::train::job::JobPaths;
use crate::train::TrainConfig;
use crate::web::{self, AppState, FieldError, JobControl};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Folder of the run store, demo data and caches.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Folder of checkpoints.
    #[arg(long, default_value = "ckpts")]
    pub ckpt_dir: PathBuf,
    /// Shared secret required on every request when listening beyond loopback.
    #[arg(long, env = "CXR8_TOKEN")]
    pub token: Option<String>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            data_dir: "data".into(),
            ckpt_dir: "ckpts".into(),
            token: None,
        }
    }
}

/// The queue as the dashboard's write side.
struct Jobs(Queue);

impl JobControl for Jobs {
    fn submit(&self, config: serde_json::Value) -> Result<String, Vec<FieldError>> {
        let config = TrainConfig::from_json(&config.to_string())?;
        self.0.submit(config)
    }

    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        self.0.cancel(id)
    }

    fn resume(&self, id: &str) -> Result<(), service::Error> {
        self.0.resume(id)
    }

    fn queue(&self) -> Vec<String> {
        self.0.queue()
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !args.host.is_loopback() && args.token.is_none() {
        bail!(
            "refusing to listen on {} without --token: anyone who can reach this address could start jobs. \
             Use the default 127.0.0.1, or give --token SECRET",
            args.host
        );
    }
    // Before anything writes to the data folder (demo set, store): one server per folder.
    let _lock = crate::lock::DataDirLock::acquire(&args.data_dir, crate::lock::Holder::Serve)?;
    let paths = JobPaths {
        data_dir: args.data_dir.clone(),
        ckpt_dir: args.ckpt_dir.clone(),
    };
    let demo = crate::data::demo::ensure(paths.demo_dir()).context("cannot prepare the demo data set")?;
    if demo.generated {
        eprintln!(
            "prepared the synthetic demo data set: {} images of {} patients in {}",
            demo.images,
            demo.patients,
            demo.out.display()
        );
    }
    let store = Arc::new(Store::open(&paths.data_dir).context("cannot open the run store")?);
    let interrupted = store.mark_interrupted()?;
    if !interrupted.is_empty() {
        eprintln!(
            "{} run(s) were interrupted by the last shutdown; resume them from the dashboard",
            interrupted.len()
        );
    }

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (events, _) = tokio::sync::broadcast::channel(web::LIVE_EVENT_BUFFER);
        let live = events.clone();
        let queue = Queue::start(
            store.clone(),
            paths,
            Arc::new(move |row| {
                let _ = live.send(row.clone());
            }),
        )
        .context("cannot start the training worker")?;
        let state = Arc::new(AppState {
            events,
            token: args.token.clone(),
            ..AppState::new(
                store,
                Arc::new(Jobs(queue.clone())),
                args.data_dir.clone(),
                args.ckpt_dir.clone(),
            )
        });
        let address = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (is another cxr8 running? try --port)"))?;
        let url = format!("http://{}", listener.local_addr()?);
        eprintln!("cxr8 dashboard: {url}");
        if args.token.is_some() {
            eprintln!("every request must carry the token: open {url}/?token=<TOKEN> once to get a cookie");
        }
        axum::serve(listener, web::app(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")?;
        queue.shutdown();
        anyhow::Ok(())
    })
}
