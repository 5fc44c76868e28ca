use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use crate::{Error, Result};

fn dir(var: &str, default: &str) -> PathBuf {
    if cfg!(all(target_arch = "wasm32", target_os = "wasi")) {
        return PathBuf::from(default);
    }
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The file of the `kind` (`input` or `output`) called `name`, which must be a plain file
/// name, under the directory `var` names natively or `default` in the sandbox.
fn path(kind: &str, var: &str, default: &str, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::msg(format!(
            "{kind} name {name:?} must be a plain file name"
        )));
    }
    Ok(dir(var, default).join(name))
}

/// A declared input, read as a stream (it implements [`Read`] and [`BufRead`]).
pub struct Input {
    name: String,
    reader: BufReader<File>,
}

/// Opens the input `name` (the file `/in/name`).
pub fn input(name: &str) -> Result<Input> {
    let path = path("input", "HELIO_IN", "/in", name)?;
    let file = File::open(&path).map_err(|e| {
        Error::from(e).context(format!("cannot open input {name:?} ({})", path.display()))
    })?;
    Ok(Input {
        name: name.to_string(),
        reader: BufReader::with_capacity(64 << 10, file),
    })
}

/// The whole input `name` as bytes.
pub fn read_input(name: &str) -> Result<Vec<u8>> {
    input(name)?.bytes()
}

impl Input {
    /// The input's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rest of the input as bytes.
    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader
            .read_to_end(&mut out)
            .map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// The rest of the input as UTF-8 text.
    pub fn text(self) -> Result<String> {
        let name = self.name.clone();
        String::from_utf8(self.bytes()?)
            .map_err(|e| Error::from(e).context(format!("input {name:?} is not UTF-8")))
    }

    /// The rest of the input parsed as JSON.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let name = self.name.clone();
        serde_json::from_reader(self.reader)
            .map_err(|e| Error::from(e).context(format!("input {name:?} is not the JSON expected")))
    }

    fn error(&self, e: io::Error) -> Error {
        Error::from(e).context(format!("reading input {:?}", self.name))
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.reader.consume(amount)
    }
}

/// A declared output, written as a stream (it implements [`Write`]). Call
/// [`Output::finish`] at the end: it reports an error a plain drop would lose, such as the
/// output growing past its `max_bytes`.
pub struct Output {
    name: String,
    writer: BufWriter<File>,
}

/// Creates (or truncates) the output `name` (the file `/out/name`).
pub fn output(name: &str) -> Result<Output> {
    let path = path("output", "HELIO_OUT", "/out", name)?;
    let file = File::create(&path).map_err(|e| {
        Error::from(e).context(format!(
            "cannot create output {name:?} ({})",
            path.display()
        ))
    })?;
    Ok(Output {
        name: name.to_string(),
        writer: BufWriter::with_capacity(64 << 10, file),
    })
}

/// Writes the whole output `name`.
pub fn write_output(name: &str, bytes: &[u8]) -> Result<()> {
    let mut out = output(name)?;
    out.write_all(bytes).map_err(|e| out.error(e))?;
    out.finish()
}

impl Output {
    /// The output's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `value` as JSON followed by a newline.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer_pretty(&mut self.writer, value).map_err(|e| self.error(e))?;
        self.writer.write_all(b"\n").map_err(|e| self.error(e))
    }

    /// Flushes everything written and closes the output.
    pub fn finish(mut self) -> Result<()> {
        self.writer.flush().map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::error::Error) -> Error {
        Error::from(e).context(format!("writing output {:?}", self.name))
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}
