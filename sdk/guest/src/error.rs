use std::fmt;

/// What went wrong in a job, in words for the person reading the task's standard error.
///
/// Any standard error converts into it with `?`, so a job's body can mix I/O, parsing and
/// its own checks; [`Error::msg`] makes one from text.
pub struct Error(String);

/// A job's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error saying `message`.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error(message.to_string())
    }

    /// The same error with `context` in front: `context: error`.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error(format!("{context}: {}", self.0))
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error(e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
