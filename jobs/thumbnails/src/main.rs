//! `thumbnails [--size N]`: for every image in `/in` (PNG or JPEG), in name order, writes
//! `/out/<name without extension>.png`, scaled so that its longer edge is at most N pixels
//! (default 128).
use helio_guest::{Error, params, progress, read_input, write_output};

fn main() {
    helio_guest::run(|| {
        let params = params();
        let size: u32 = params.get_or("size", 128)?;
        params.finish()?;
        if !(1..=16384).contains(&size) {
            return Err(Error::msg("--size must be between 1 and 16384"));
        }
        let mut names: Vec<String> = std::fs::read_dir("/in")
            .map_err(|e| Error::from(e).context("listing /in"))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for (i, name) in names.iter().enumerate() {
            let thumb = thumbnails::thumbnail(&read_input(name)?, size)
                .map_err(|e| Error::msg(format!("input {name:?}: {e}")))?;
            let stem = name
                .rsplit_once('.')
                .map_or(name.as_str(), |(stem, _)| stem);
            write_output(&format!("{stem}.png"), &thumb.png)?;
            println!("{name}: {}×{}", thumb.width, thumb.height);
            progress(i as u64 + 1, names.len() as u64);
        }
        Ok(())
    })
}
