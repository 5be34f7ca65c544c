//! `exec`: a command in a running container, a terminal through a pty when asked, carried
//! by a remote-command session (see `session`).

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::debug;

use super::pty::{spawn_on_terminal, spawn_with_console, Pty};
use super::session::{self, Input, Output, Query};
use super::{container_not_found, running_container, text, Body};
use crate::Ctx;

/// Exec in a running container: the upgrade (WebSocket or SPDY) is answered here, the
/// command starts, and a task carries its stdio until it exits or the client leaves.
pub(super) async fn exec(
    ctx: &Arc<Ctx>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let q = Query::parse(req.uri().query().unwrap_or(""));
    if q.command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let Some((_, inst)) = running_container(ctx, ns, pod, container) else {
        return container_not_found(container);
    };
    if !session::is_upgrade(&req) {
        return session::not_an_upgrade("exec");
    }
    let process = match Process::spawn(ctx, &inst.id, &q).await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("exec: {e}")),
    };
    let streams = q.streams;
    let command = q.command;
    session::upgrade(req, streams, "exec", move |input, output| async move {
        process.run(input, output, &command).await
    })
}

/// The exec'd runtime process: piped stdio, or a terminal.
struct Process {
    child: tokio::process::Child,
    terminal: Option<Pty>,
}

impl Process {
    async fn spawn(ctx: &Ctx, container_id: &str, q: &Query) -> std::io::Result<Process> {
        if q.streams.tty && ctx.runtime.exec_takes_console_socket() {
            let (child, pty) = spawn_with_console(|socket| {
                ctx.runtime
                    .exec_tty_command(container_id, &q.command, Some(socket))
            })
            .await?;
            Ok(Process {
                child,
                terminal: Some(pty),
            })
        } else if q.streams.tty {
            let (pty, slave) = Pty::open()?;
            let child = spawn_on_terminal(
                ctx.runtime.exec_tty_command(container_id, &q.command, None),
                slave,
            )?;
            Ok(Process {
                child,
                terminal: Some(pty),
            })
        } else {
            let child = ctx
                .runtime
                .exec_command(container_id, &q.command, q.streams.stdin)
                .kill_on_drop(true)
                .spawn()?;
            Ok(Process {
                child,
                terminal: None,
            })
        }
    }

    /// Carries stdio until the process's output ends, then reports its exit. If the client
    /// goes first, the process is killed.
    async fn run(mut self, input: mpsc::Receiver<Input>, mut output: Output, command: &[String]) {
        let finished = match self.terminal.take() {
            Some(pty) => pump_terminal(pty, input, &mut output).await,
            None => pump_pipes(&mut self.child, input, &mut output).await,
        };
        if finished {
            let code = self.child.wait().await.ok().and_then(|s| s.code());
            output.finish(code, command).await;
        } else {
            debug!("exec client left before the command ended");
        }
        let _ = self.child.kill().await;
    }
}

/// Pipes: stdin in, stdout and stderr out. True when the output ended (the command is
/// done), false when the client went away.
async fn pump_pipes(
    child: &mut tokio::process::Child,
    mut input: mpsc::Receiver<Input>,
    output: &mut Output,
) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out_buf = vec![0u8; 32 * 1024];
    let mut err_buf = vec![0u8; 32 * 1024];
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            msg = input.recv() => match msg {
                Some(Input::Stdin(data)) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(Input::StdinClosed) => stdin = None,
                Some(Input::Resize(_)) => {} // meaningless without a tty
                // The client left (WebSocket closed, SPDY connection gone).
                None => return false,
            },
            n = read_some(&mut stdout, &mut out_buf) => match n {
                Some(n) => if !output.stdout(&out_buf[..n]).await { return false },
                None => stdout = None,
            },
            n = read_some(&mut stderr, &mut err_buf) => match n {
                Some(n) => if !output.stderr(&err_buf[..n]).await { return false },
                None => stderr = None,
            },
        }
    }
    true
}

/// A terminal: input and resizes to the pty, its output to stdout.
async fn pump_terminal(pty: Pty, mut input: mpsc::Receiver<Input>, output: &mut Output) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    let mut client_open = true;
    loop {
        tokio::select! {
            msg = input.recv(), if client_open => match msg {
                Some(Input::Stdin(data)) => client_open = pty.write_all(&data).await.is_ok(),
                Some(Input::Resize(size)) => pty.resize(size.width, size.height),
                Some(Input::StdinClosed) => {}
                None => return false,
            },
            n = pty.read(&mut buf) => match n {
                Ok(n) if n > 0 => {
                    if !output.stdout(&buf[..n]).await {
                        return false;
                    }
                }
                // EIO once the runtime (the last holder of the slave) has exited.
                _ => return true,
            },
        }
    }
}

/// Reads from an optional pipe; None at EOF, error, or when there is no pipe (never ready).
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    match pipe.as_mut() {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}
