//! Network namespaces: open one by name or path, identify it, and run code inside it on the
//! current thread with the previous namespace always restored.
//!
//! A network namespace belongs to a thread, not a process, so the "current" namespace is read from
//! `/proc/thread-self/ns/net`. A netlink socket stays in the namespace it was opened in, so the
//! usual pattern is: enter the pod namespace, open a socket, leave, and use that socket from the
//! host thread ([`super::Netlink::open_in`]).

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::error::{Cause, Error, Result};

/// Where `ip netns add` creates named namespaces.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";
/// `NSFS_MAGIC`: the file system type of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// An open network namespace file.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

/// The identity of a network namespace: the device and inode of its nsfs file. Two handles refer
/// to the same namespace exactly when their ids are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl Netns {
    /// The namespace of the calling thread (`/proc/thread-self/ns/net`, or
    /// `/proc/self/task/<tid>/ns/net` on kernels older than 3.17).
    pub fn current() -> Result<Netns> {
        match Netns::open("/proc/thread-self/ns/net") {
            Err(e) if e.is_not_found() => {
                let tid = rustix::thread::gettid().as_raw_nonzero();
                Netns::open(format!("/proc/self/task/{tid}/ns/net"))
            }
            other => other,
        }
    }

    /// Opens a namespace file: a CNI_NETNS path such as `/proc/<pid>/ns/net` or
    /// `/var/run/netns/<name>`. Fails if the file is not a namespace.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let op = || format!("open network namespace {}", path.display());
        let file = File::open(path).map_err(|e| Error::new(op(), Cause::Io(e)))?;
        let fs = rustix::fs::fstatfs(&file).map_err(|e| Error::new(op(), Cause::Io(e.into())))?;
        #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 and u32/i32 elsewhere
        if fs.f_type as i64 != NSFS_MAGIC {
            return Err(Error::new(
                op(),
                Cause::Invalid("not a namespace file (expected /proc/<pid>/ns/net or a file under /var/run/netns)".into()),
            ));
        }
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens the named namespace `/var/run/netns/<name>` (as made by `ip netns add <name>`).
    pub fn open_named(name: &str) -> Result<Netns> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::new(
                format!("open network namespace {name:?}"),
                Cause::Invalid("a namespace name must be non-empty and contain no '/'".into()),
            ));
        }
        Netns::open(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace identity (device, inode).
    pub fn id(&self) -> Result<NetnsId> {
        let st = rustix::fs::fstat(&self.file).map_err(|e| {
            Error::new(
                format!("stat network namespace {}", self.path.display()),
                Cause::Io(e.into()),
            )
        })?;
        Ok(NetnsId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Moves the calling thread into this namespace until the returned guard is dropped (or
    /// [`NetnsGuard::restore`] is called). The guard cannot leave the thread. If switching back
    /// ever fails, the process aborts: a thread never runs on in the wrong namespace.
    pub fn enter(&self) -> Result<NetnsGuard> {
        let prev = Netns::current()?;
        setns(self.as_fd(), &self.path)?;
        Ok(NetnsGuard {
            prev: Some(prev),
            _not_send: PhantomData,
        })
    }

    /// Runs `f` inside this namespace on the calling thread and switches back afterwards, also
    /// when `f` returns early or panics. Fails only when the namespace cannot be entered.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let guard = self.enter()?;
        let out = f();
        guard.restore();
        Ok(out)
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn setns(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    move_into_link_name_space(fd, Some(LinkNameSpaceType::Network)).map_err(|e| {
        Error::new(
            format!("enter network namespace {}", path.display()),
            Cause::Io(e.into()),
        )
    })
}

/// Keeps the thread inside a namespace; switching back happens on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    prev: Option<Netns>,
    // setns acts on the calling thread: the guard must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Switches back to the namespace the thread was in before (what dropping the guard does). There
    /// is nothing to report: if the switch fails, the process aborts.
    pub fn restore(mut self) {
        self.switch_back();
    }

    fn switch_back(&mut self) {
        if let Some(prev) = self.prev.take() {
            if let Err(e) = setns(prev.as_fd(), &prev.path) {
                // A thread left in a pod's namespace would configure the wrong namespace from
                // now on, and no caller can be trusted to stop using it: stopping is the only
                // safe choice.
                log::error!("{e}; aborting rather than running in the wrong network namespace");
                std::process::abort();
            }
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        self.switch_back();
    }
}
