//! Rendering shared by the `report` command and the pages: how numbers
//! print, SVG charts, and the evidence pack.

pub mod evidence;
pub mod numfmt;
pub mod svg;
