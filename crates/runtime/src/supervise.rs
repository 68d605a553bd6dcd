//! One supervisor for every service: its critical tasks (the consume loop,
//! the HTTP endpoints, a feed) run in one `JoinSet`; the first to end, for
//! whatever reason, stops the others, and the drain is bounded.

use std::future::Future;
use std::time::Duration;

use futures::future::{FusedFuture as _, FutureExt as _, OptionFuture};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The critical tasks of a process and the token that stops them.
#[derive(Debug)]
pub struct Supervisor {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    token: CancellationToken,
    drain: Duration,
}

impl Supervisor {
    /// Tasks stopped by `token` (the signals' token, or a child of it),
    /// given `drain` to finish once it is cancelled.
    pub fn new(token: CancellationToken, drain: Duration) -> Self {
        Self {
            tasks: JoinSet::new(),
            token,
            drain,
        }
    }

    /// The token the tasks watch.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts a critical task, named for the messages about it.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Runs until every task has ended. The first task to end cancels the
    /// token (a task that ends by itself, or fails, stops the process);
    /// the others then have the drain time to finish what they hold, and
    /// are aborted after it. Returns the first failure, with the name of
    /// its task.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_with(None::<(&str, std::future::Ready<anyhow::Result<()>>)>)
            .await
    }

    /// [`run`](Self::run), with one more task run here rather than spawned
    /// (one that borrows from the caller, such as a service's consume
    /// loop).
    pub async fn run_foreground(
        self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        self.run_with(Some((name, task))).await
    }

    async fn run_with(
        mut self,
        foreground: Option<(&'static str, impl Future<Output = anyhow::Result<()>>)>,
    ) -> anyhow::Result<()> {
        let mut failure: Option<anyhow::Error> = None;
        let mut note = |name: &str, result: Joined| {
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.context(format!("{name} failed")),
                Err(e) if e.is_panic() => anyhow::anyhow!("{name} panicked: {e}"),
                Err(e) => anyhow::anyhow!("{name} was cancelled: {e}"),
            };
            tracing::error!(task = name, error = %format!("{error:#}"), "a critical task ended with an error; stopping");
            failure.get_or_insert(error);
        };
        // The foreground task, if any (without one it is done at once);
        // fused, so that once finished it says so instead of being polled
        // again.
        let fg =
            OptionFuture::from(foreground.map(|(name, task)| async move { (name, task.await) }))
                .fuse();
        tokio::pin!(fg);
        // The first task to end.
        let first = tokio::select! {
            Some((name, result)) = &mut fg => Some((name, Ok(result))),
            Some(joined) = self.tasks.join_next() => Some(split(joined)),
            else => None,
        };
        if let Some((name, result)) = first {
            if !self.token.is_cancelled() {
                tracing::info!(task = name, "a critical task ended; stopping the others");
            }
            self.token.cancel();
            note(name, result);
        }
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(self.drain, async {
            let mut ended = Vec::new();
            if !fg.is_terminated()
                && let Some((name, result)) = (&mut fg).await
            {
                ended.push((name, Ok(result)));
            }
            while let Some(joined) = tasks.join_next().await {
                ended.push(split(joined));
            }
            ended
        })
        .await;
        match drained {
            Ok(ended) => {
                for (name, result) in ended {
                    note(name, result);
                }
            }
            Err(_) => {
                self.tasks.abort_all();
                let error = anyhow::anyhow!(
                    "did not stop within {:?} (--shutdown-timeout); aborted: records not committed will be read again",
                    self.drain
                );
                tracing::error!(error = %error, "shutdown");
                failure.get_or_insert(error);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// A task's result as joined.
type Joined = Result<anyhow::Result<()>, tokio::task::JoinError>;

/// The task's name and result (a task that panicked or was aborted has no
/// name of its own: "a task").
fn split(
    joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
) -> (&'static str, Joined) {
    match joined {
        Ok((name, result)) => (name, Ok(result)),
        Err(e) => ("a task", Err(e)),
    }
}

/// Runs `f`, a call that blocks (a librdkafka call that waits on the
/// broker), without holding up the other tasks of the async worker it is
/// called from: on a multi-threaded runtime the worker hands its tasks to
/// another thread first. Elsewhere (no runtime, or a single-threaded one,
/// as in tests) it runs `f` as it is.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_task_stops_the_others_and_is_returned() {
        let mut s = Supervisor::new(CancellationToken::new(), Duration::from_secs(5));
        let token = s.token();
        s.spawn("loop", async move {
            token.cancelled().await;
            Ok(())
        });
        s.spawn("http", async {
            anyhow::bail!("cannot listen on 127.0.0.1:1")
        });
        let error = s.run().await.unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "http failed: cannot listen on 127.0.0.1:1"
        );
    }

    #[tokio::test]
    async fn a_task_that_ends_by_itself_stops_the_others_without_error() {
        let mut s = Supervisor::new(CancellationToken::new(), Duration::from_secs(5));
        let token = s.token();
        s.spawn("loop", async move {
            token.cancelled().await;
            Ok(())
        });
        s.spawn("once", async { Ok(()) });
        s.run().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_does_not_drain_in_time_is_aborted() {
        let token = CancellationToken::new();
        let mut s = Supervisor::new(token.clone(), Duration::from_secs(3));
        s.spawn("stuck", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        token.cancel();
        s.spawn("stops", async { Ok(()) });
        let error = s.run().await.unwrap_err();
        assert!(
            format!("{error}").contains("did not stop within 3s"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_panicking_task_is_a_failure() {
        let mut s = Supervisor::new(CancellationToken::new(), Duration::from_secs(5));
        s.spawn("bad", async { panic!("boom") });
        assert!(format!("{}", s.run().await.unwrap_err()).contains("panicked"));
    }

    #[tokio::test]
    async fn a_foreground_task_that_fails_stops_the_spawned_ones() {
        let mut s = Supervisor::new(CancellationToken::new(), Duration::from_secs(5));
        let token = s.token();
        s.spawn("http", async move {
            token.cancelled().await;
            Ok(())
        });
        let error = s
            .run_foreground("validator", async { anyhow::bail!("delivery failed") })
            .await
            .unwrap_err();
        assert_eq!(format!("{error:#}"), "validator failed: delivery failed");
    }

    #[tokio::test]
    async fn a_spawned_task_that_fails_stops_the_foreground_one() {
        let mut s = Supervisor::new(CancellationToken::new(), Duration::from_secs(5));
        let token = s.token();
        s.spawn("http", async { anyhow::bail!("cannot listen") });
        let error = s
            .run_foreground("validator", async move {
                token.cancelled().await;
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(format!("{error:#}"), "http failed: cannot listen");
    }

    #[test]
    fn blocking_runs_outside_a_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }
}
