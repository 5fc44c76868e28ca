mod cache;
mod check;
mod determinism;
mod files;
mod nan;
mod outcomes;
mod rejections;
