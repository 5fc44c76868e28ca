//! Where the runner keeps its state when not told: the user's data directory, as the system
//! names it (on Linux, `$XDG_DATA_HOME`, else `~/.local/share`).

use super::check::runner;

#[cfg(target_os = "linux")]
#[test]
fn the_owner_key_goes_to_the_user_s_data_directory() {
    let home = tempfile::tempdir().unwrap();
    let make = |xdg: Option<&std::path::Path>| {
        let mut cmd = runner();
        cmd.args(["owner", "create"])
            .env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("HELIO_OWNER_KEY");
        if let Some(dir) = xdg {
            cmd.env("XDG_DATA_HOME", dir);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = make(None);
    let default = home.path().join(".local/share/helio/runner/owner.key");
    assert!(default.is_file(), "{printed}");
    assert!(printed.contains(default.to_str().unwrap()), "{printed}");
    let xdg = home.path().join("xdg");
    make(Some(&xdg));
    assert!(xdg.join("helio/runner/owner.key").is_file());
}
