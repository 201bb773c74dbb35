//! Process stdio: containerd's fifos on one side, pipes or a pty master on
//! the other, and copy threads in between.
//!
//! Like containerd's runc shim, the container never sees the fifos: it gets
//! pipes (or a terminal), so a client detaching or containerd restarting
//! cannot hand it EPIPE, and a checkpoint records plain pipes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lazarus_core::fdpass::receive_with_fd;

use crate::error::{Error, Result};
use crate::runtime::{ProcessIo, ProcessStdio};

/// The fifo paths containerd gave for one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's side of a running process's stdio.
pub struct ProcessStreams {
    /// Where stdin data goes; taken (closed) on CloseIO or stdin EOF.
    stdin: Arc<StdinSink>,
    /// The pty master, for ResizePty.
    console: Option<File>,
    /// Threads copying the process's output to containerd.
    outputs: Vec<JoinHandle<()>>,
}

/// Stdio set up before the process exists; [`PendingIo::connect`] finishes it
/// once the runtime has created the process.
pub enum PendingIo {
    Pipes {
        paths: StdioPaths,
        process_side: ProcessStdio,
        shim_side: [Option<File>; 3],
    },
    Console {
        paths: StdioPaths,
        listener: UnixListener,
        socket: PathBuf,
    },
}

/// How long the runtime has, after creating the process, to have sent the pty
/// master over the console socket.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

impl PendingIo {
    /// `console_dir` must be short: unix socket paths are limited to 108 bytes,
    /// so sockets are named by shim pid and a counter, not by container id.
    pub fn prepare(paths: &StdioPaths, console_dir: &Path) -> Result<Self> {
        if paths.terminal {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let name = format!(
                "{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            std::fs::create_dir_all(console_dir)
                .map_err(Error::io(format!("create {}", console_dir.display())))?;
            let socket = console_dir.join(format!("{name}.sock"));
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).map_err(Error::io(format!(
                "bind console socket {}",
                socket.display()
            )))?;
            return Ok(PendingIo::Console {
                paths: paths.clone(),
                listener,
                socket,
            });
        }
        let (stdin, stdin_writer) = if paths.stdin.is_empty() {
            (dev_null()?, None)
        } else {
            let (r, w) = pipe()?;
            (r, Some(File::from(w)))
        };
        let (stdout, stdout_reader) = output_pipe(&paths.stdout)?;
        let (stderr, stderr_reader) = output_pipe(&paths.stderr)?;
        let shim_side = [stdin_writer, stdout_reader, stderr_reader];
        Ok(PendingIo::Pipes {
            paths: paths.clone(),
            process_side: ProcessStdio {
                stdin,
                stdout,
                stderr,
            },
            shim_side,
        })
    }

    /// What the runtime hands to the new process.
    pub fn for_process(&self) -> ProcessIo<'_> {
        match self {
            PendingIo::Pipes { process_side, .. } => ProcessIo::Stdio(process_side),
            PendingIo::Console { socket, .. } => ProcessIo::Console(socket.clone()),
        }
    }

    /// The process exists: close our copies of its ends and start copying.
    pub fn connect(self) -> Result<ProcessStreams> {
        match self {
            PendingIo::Pipes {
                paths,
                process_side,
                shim_side,
            } => {
                drop(process_side);
                let [stdin, stdout, stderr] = shim_side;
                let stdin = StdinSink::new(stdin, !paths.stdin.is_empty());
                if stdin.has_copier {
                    copy_stdin(paths.stdin.clone(), stdin.clone())?;
                }
                let mut outputs = Vec::new();
                for (src, path) in [(stdout, &paths.stdout), (stderr, &paths.stderr)] {
                    if let Some(src) = src {
                        outputs.push(copy_output(src, path.clone())?);
                    }
                }
                Ok(ProcessStreams {
                    stdin,
                    console: None,
                    outputs,
                })
            }
            PendingIo::Console {
                paths,
                listener,
                socket,
            } => {
                let master = receive_master(&listener);
                let _ = std::fs::remove_file(&socket);
                console_streams(&paths, master?)
            }
        }
    }

    /// The process-side stdio fds (for CRIU's inherit_fd); None for a terminal.
    pub fn process_fds(&self) -> Option<[RawFd; 3]> {
        match self {
            PendingIo::Pipes { process_side, .. } => {
                Some(process_side.fds().map(|f| f.as_raw_fd()))
            }
            PendingIo::Console { .. } => None,
        }
    }
}

/// Streams for a process on a terminal whose master we hold (received over
/// the console socket, or from CRIU for a restored terminal).
pub fn console_streams(paths: &StdioPaths, master: File) -> Result<ProcessStreams> {
    let clone = |what: &str| {
        master
            .try_clone()
            .map_err(Error::io(format!("duplicate pty master for {what}")))
    };
    // Our stdin copy of the master may close at stdin EOF: the terminal
    // stays up while `console` and the output copier hold theirs.
    let has_stdin = !paths.stdin.is_empty();
    let stdin = StdinSink::new(
        if has_stdin {
            Some(clone("stdin")?)
        } else {
            None
        },
        has_stdin,
    );
    if has_stdin {
        copy_stdin(paths.stdin.clone(), stdin.clone())?;
    }
    let mut outputs = Vec::new();
    if !paths.stdout.is_empty() {
        outputs.push(copy_output(clone("stdout")?, paths.stdout.clone())?);
    }
    Ok(ProcessStreams {
        stdin,
        console: Some(master),
        outputs,
    })
}

/// Sets the size of the terminal `console` is a side of (TIOCSWINSZ).
fn set_window_size(console: BorrowedFd<'_>, size: &libc::winsize) -> std::io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which points
    // to a live winsize for the whole call; the fd is borrowed, so open.
    let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, size) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl ProcessStreams {
    /// Closes the process's stdin (CloseIO).
    pub fn close_stdin(&self) {
        self.stdin.close();
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(console) = &self.console else {
            return Err(Error::FailedPrecondition(
                "process has no terminal to resize".into(),
            ));
        };
        let size = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        set_window_size(console.as_fd(), &size).map_err(Error::io("resize terminal"))
    }

    /// Waits (bounded) until the process's output has reached containerd, so
    /// that an exit event never overtakes the last lines of output.
    pub fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for handle in std::mem::take(&mut self.outputs) {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Error::sys("create pipe"))
}

/// The process's end (write side) and ours (read side) of an output pipe;
/// /dev/null when containerd wants no such stream.
fn output_pipe(fifo: &str) -> Result<(OwnedFd, Option<File>)> {
    if fifo.is_empty() {
        return Ok((dev_null()?, None));
    }
    let (r, w) = pipe()?;
    Ok((w, Some(File::from(r))))
}

fn dev_null() -> Result<OwnedFd> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(Error::io("open /dev/null"))?
        .into())
}

/// Where stdin data goes (a pipe to the process, or the pty master), and
/// whether CloseIO asked for it to be closed.
pub struct StdinSink {
    file: Mutex<Option<File>>,
    close_requested: AtomicBool,
    /// A copier owns closing: it closes once the fifo is drained.
    has_copier: bool,
}

impl StdinSink {
    fn new(file: Option<File>, has_copier: bool) -> Arc<Self> {
        Arc::new(StdinSink {
            file: Mutex::new(file),
            close_requested: AtomicBool::new(false),
            has_copier,
        })
    }

    /// CloseIO: the client has sent everything. With a copier, closing waits
    /// until what the client wrote has been copied, so no data is lost.
    fn close(&self) {
        self.close_requested.store(true, Ordering::SeqCst);
        if !self.has_copier {
            self.file.lock().unwrap().take();
        }
    }
}

/// How often the stdin copier looks for a CloseIO while the fifo is idle.
const STDIN_POLL_MS: u16 = 100;

/// Copies containerd's stdin fifo into the process. The fifo is opened
/// non-blocking (there may be no writer yet) and polled: Linux reports
/// POLLHUP on a fifo only after a writer has come and gone, so "no client
/// yet" is not mistaken for EOF. The sink is closed at EOF, or after a
/// CloseIO once the fifo is empty.
fn copy_stdin(fifo: String, sink: Arc<StdinSink>) -> Result<()> {
    let src = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(Error::io(format!("open stdin fifo {fifo}")))?;
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            copy_stdin_loop(src, &sink);
            sink.file.lock().unwrap().take();
        })
        .map_err(Error::io("spawn stdin copier"))?;
    Ok(())
}

fn copy_stdin_loop(mut src: File, sink: &StdinSink) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = [PollFd::new(src.as_fd(), PollFlags::POLLIN)];
        let ready = match poll(&mut fds, PollTimeout::from(STDIN_POLL_MS)) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return,
        };
        if ready == 0 {
            if sink.close_requested.load(Ordering::SeqCst) {
                return; // CloseIO and nothing left to copy
            }
            continue;
        }
        match src.read(&mut buf) {
            Ok(0) => return, // the client closed its end: EOF
            Ok(n) => {
                let mut guard = sink.file.lock().unwrap();
                let Some(dst) = guard.as_mut() else { return };
                if dst.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Woken without data: a hang-up before any writer, or a race.
                if sink.close_requested.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(STDIN_POLL_MS as u64));
            }
            Err(_) => return,
        }
    }
}

/// Copies one output stream of the process to containerd's fifo. The fifo is
/// opened read-write so the open never blocks and a reader that goes away
/// (a client detaching, containerd restarting) never makes us fail.
fn copy_output(mut src: File, fifo: String) -> Result<JoinHandle<()>> {
    let mut dst = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .map_err(Error::io(format!("open output fifo {fifo}")))?;
    std::thread::Builder::new()
        .name("output".into())
        .spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match src.read(&mut buf) {
                    // EIO: the terminal's last slave fd closed.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if dst.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .map_err(Error::io("spawn output copier"))
}

/// Accepts the runtime's connection on the console socket and takes the pty
/// master it sends (SCM_RIGHTS).
fn receive_master(listener: &UnixListener) -> Result<File> {
    listener
        .set_nonblocking(true)
        .map_err(Error::io("console socket"))?;
    let deadline = Instant::now() + CONSOLE_TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io("receive the terminal from the runtime")(e)),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(Error::io("console socket"))?;
    stream
        .set_read_timeout(Some(CONSOLE_TIMEOUT))
        .map_err(Error::io("console socket"))?;
    let mut name = [0u8; 256];
    let (_, master) = receive_with_fd(stream.as_raw_fd(), &mut name, "pty master")?;
    if let Some(master) = master {
        return Ok(File::from(master));
    }
    Err(Error::Runtime(
        "the runtime sent no terminal over the console socket".into(),
    ))
}
