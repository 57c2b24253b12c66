//! `config_toml`: the text of the `--config` file through its parser.

/// Parses `data` as the configuration file's text (the files it names are not read).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = edge_sfu::config::parse_file(text) {
        let _ = format!("{config:?}");
    }
}
