//! The browser client and demo pages, compiled into the binary so it stays one file.

/// One embedded file: its URL path, media type and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// URL path it is served at.
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every embedded file.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "/index.html",
        content_type: HTML,
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "/share.html",
        content_type: HTML,
        body: include_str!("../web/share.html"),
    },
    Asset {
        path: "/edge-sfu.js",
        content_type: JS,
        body: include_str!("../web/edge-sfu.js"),
    },
    Asset {
        path: "/room.js",
        content_type: JS,
        body: include_str!("../web/room.js"),
    },
    Asset {
        path: "/share.js",
        content_type: JS,
        body: include_str!("../web/share.js"),
    },
    Asset {
        path: "/style.css",
        content_type: CSS,
        body: include_str!("../web/style.css"),
    },
];

/// The embedded file served at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
