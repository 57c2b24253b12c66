//! File names from participants' display names, which are untrusted input.

/// The longest participant part of a file name, in characters.
const MAX_NAME_CHARS: usize = 48;

/// `name` reduced to a safe file name part: ASCII letters, digits, `-` and `_` kept, every
/// other character (path separators, dots, spaces, non-ASCII) becomes `_`; at most 48
/// characters; never empty.
pub fn sanitize(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "participant".to_owned()
    } else {
        safe
    }
}

/// The file name of file `file` of participant `participant` with extension `extension`.
pub fn file_name(participant: &str, file: u64, extension: &str) -> String {
    format!("{}-{file}.{extension}", sanitize(participant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_directory_or_hide() {
        assert_eq!(
            file_name("../../etc/passwd", 3, "webm"),
            "______etc_passwd-3.webm"
        );
        assert_eq!(file_name(".hidden", 1, "mkv"), "_hidden-1.mkv");
        assert_eq!(file_name("", 2, "webm"), "participant-2.webm");
        assert_eq!(file_name("Zoë B.", 4, "webm"), "Zo__B_-4.webm");
        assert_eq!(sanitize(&"x".repeat(500)).len(), MAX_NAME_CHARS);
    }
}
