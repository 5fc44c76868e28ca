use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A BLAKE3 hash, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blake3Hash([u8; 32]);

impl Blake3Hash {
    /// All zeros: no hash of anything, used where a chain starts.
    pub const ZERO: Blake3Hash = Blake3Hash([0; 32]);

    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Blake3Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps raw hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Blake3Hash(bytes)
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lowercase hex digits; anything else is an error that says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() != 64 {
            return Err(format!(
                "a BLAKE3 hash is 64 lowercase hex digits, got {} characters",
                text.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let hi = hex_digit(pair[0]);
            let lo = hex_digit(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                _ => {
                    return Err(
                        "a BLAKE3 hash is 64 lowercase hex digits (0-9, a-f), found another character"
                            .into(),
                    );
                }
            }
        }
        Ok(Blake3Hash(out))
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl From<blake3::Hash> for Blake3Hash {
    fn from(hash: blake3::Hash) -> Self {
        Blake3Hash(*hash.as_bytes())
    }
}

impl fmt::Display for Blake3Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Blake3Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blake3Hash({self})")
    }
}

impl FromStr for Blake3Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Blake3Hash::parse(s)
    }
}

impl Serialize for Blake3Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Blake3Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Blake3Hash::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A task, batch, input or output name: `[A-Za-z0-9._-]{1,128}`, and neither `.` nor `..`
/// (so a name can never be a path step).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// The longest name allowed.
    pub const MAX_LEN: usize = 128;

    /// Checks `text` against the name rule.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(format!(
                "a name has 1 to {} characters, got {}",
                Self::MAX_LEN,
                text.len()
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "{text:?} contains {bad:?}; a name may hold only A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        if text == "." || text == ".." {
            return Err(format!("{text:?} is not a name"));
        }
        Ok(Name(text.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Name::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A runner tier. Tiers are ordered: a task of tier `t` may run on any runner of tier `t`
/// or above (`cpu` < `gpu` < `hpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Tier {
    /// An ordinary computer's CPU (laptops, desktops, Raspberry Pis).
    #[default]
    Cpu,
    /// A machine with a consumer GPU.
    Gpu,
    /// A high-performance computing node.
    Hpc,
}

impl Tier {
    /// All tiers, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Cpu, Tier::Gpu, Tier::Hpc];

    /// The tier's name as written in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Cpu => "cpu",
            Tier::Gpu => "gpu",
            Tier::Hpc => "hpc",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown tier {s:?}; the tiers are cpu, gpu and hpc"))
    }
}

impl Serialize for Tier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a module's or an input's bytes are. Relative paths resolve against the location
/// of the manifest that names them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// A path on the local file system, relative (to the manifest) or absolute.
    Path(String),
    /// `file://`, `s3://`, `http://` or `https://` followed by the rest of the URL.
    Url {
        /// `file`, `s3`, `http` or `https`.
        scheme: String,
        /// Everything after `scheme://`.
        rest: String,
    },
}

impl Uri {
    /// The URL schemes a manifest may use.
    pub const SCHEMES: [&'static str; 4] = ["file", "s3", "http", "https"];

    /// Parses a URI as the contract allows it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a URI may not be empty".into());
        }
        if text.contains('\0') {
            return Err("a URI may not contain a NUL character".into());
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            if !Self::SCHEMES.contains(&scheme) {
                return Err(format!(
                    "unsupported URI scheme {scheme:?}; use a path or a file://, s3://, http:// or https:// URL"
                ));
            }
            if rest.is_empty() {
                return Err(format!("{text:?} names no object"));
            }
            return Ok(Uri::Url {
                scheme: scheme.to_string(),
                rest: rest.to_string(),
            });
        }
        Ok(Uri::Path(text.to_string()))
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Path(p) => f.write_str(p),
            Uri::Url { scheme, rest } => write!(f, "{scheme}://{rest}"),
        }
    }
}

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl Serialize for Uri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Uri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Uri::parse(&text).map_err(serde::de::Error::custom)
    }
}
