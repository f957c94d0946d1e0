//! REST/JSON transcoding (filled in by the REST work).
