//! The one error type of the kernel adapters: what we tried (operation and object) and why it failed.

use std::fmt;
use std::io;

/// Why a kernel operation failed.
#[derive(Debug)]
pub enum Cause {
    /// The kernel answered with an errno, maybe with an extended-ack message.
    Errno {
        /// Positive errno value.
        errno: i32,
        /// `NLMSGERR_ATTR_MSG` text, if the kernel sent one.
        ext_msg: Option<String>,
    },
    /// A system call on the socket, a namespace file or a sysctl file failed.
    Io(io::Error),
    /// The kernel's reply could not be decoded.
    Malformed(&'static str),
    /// The object the operation needs does not exist (e.g. a link name that is not there).
    NotFound,
    /// The request itself is not valid; the text says what is allowed.
    Invalid(String),
}

/// A failed kernel operation, e.g. `add route 10.0.0.5/32 dev eni1234 table 2: File exists (EEXIST)`.
#[derive(Debug)]
pub struct Error {
    /// The operation and its object, in `ip`-like words.
    pub op: String,
    /// What went wrong.
    pub cause: Cause,
}

impl Error {
    /// An error for `op` with `cause`.
    pub fn new(op: impl Into<String>, cause: Cause) -> Self {
        Error {
            op: op.into(),
            cause,
        }
    }

    /// The errno, for errors the kernel (or a system call) returned.
    pub fn errno(&self) -> Option<i32> {
        match &self.cause {
            Cause::Errno { errno, .. } => Some(*errno),
            Cause::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// True for `EEXIST`.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }

    /// True when the object was not there (`ENOENT`, `ESRCH`, `ENODEV`, `EADDRNOTAVAIL` or [`Cause::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        matches!(self.cause, Cause::NotFound)
            || matches!(
                self.errno(),
                Some(
                    libc_errno::ENOENT
                        | libc_errno::ESRCH
                        | libc_errno::ENODEV
                        | libc_errno::EADDRNOTAVAIL
                )
            )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.op)?;
        match &self.cause {
            Cause::Errno { errno, ext_msg } => {
                write!(f, "{}", ErrnoText(*errno))?;
                if let Some(m) = ext_msg {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            Cause::Io(e) => match e.raw_os_error() {
                Some(n) => write!(f, "{}", ErrnoText(n)),
                None => write!(f, "{e}"),
            },
            Cause::Malformed(what) => write!(f, "malformed reply from the kernel: {what}"),
            Cause::NotFound => write!(f, "not found"),
            Cause::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Result of kernel operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Displays an errno as `File exists (EEXIST)`.
#[derive(Debug, Clone, Copy)]
pub struct ErrnoText(pub i32);

impl fmt::Display for ErrnoText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = io::Error::from_raw_os_error(self.0).to_string();
        // std prints "<strerror> (os error N)"; keep the strerror part and name the constant.
        let text = text.split(" (os error").next().unwrap_or(&text);
        match errno_name(self.0) {
            Some(name) => write!(f, "{text} ({name})"),
            None => write!(f, "{text} (errno {})", self.0),
        }
    }
}

/// Errno values the adapters test for (Linux numbers, all architectures we build for).
pub mod libc_errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// No such process (used for missing routes and rules).
    pub const ESRCH: i32 = 3;
    /// Interrupted system call.
    pub const EINTR: i32 = 4;
    /// Resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Address not available.
    pub const EADDRNOTAVAIL: i32 = 99;
}

fn errno_name(n: i32) -> Option<&'static str> {
    Some(match n {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        28 => "ENOSPC",
        30 => "EROFS",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        71 => "EPROTO",
        90 => "EMSGSIZE",
        93 => "EPROTONOSUPPORT",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        105 => "ENOBUFS",
        113 => "EHOSTUNREACH",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_object_and_errno() {
        let e = Error::new(
            "add route 10.0.0.5/32 dev eni1234 table 2",
            Cause::Errno {
                errno: 17,
                ext_msg: None,
            },
        );
        assert_eq!(
            e.to_string(),
            "add route 10.0.0.5/32 dev eni1234 table 2: File exists (EEXIST)"
        );
        assert!(e.is_exists());
        let e = Error::new(
            "add rule",
            Cause::Errno {
                errno: 22,
                ext_msg: Some("Invalid table".into()),
            },
        );
        assert_eq!(
            e.to_string(),
            "add rule: Invalid argument (EINVAL): Invalid table"
        );
        assert!(!e.is_not_found());
        let e = Error::new(
            "x",
            Cause::Errno {
                errno: 3,
                ext_msg: None,
            },
        );
        assert!(e.is_not_found());
        assert!(ErrnoText(200).to_string().ends_with(" (errno 200)"));
    }
}
