//! The chart's copy.
use std::path::Path;

/// Update.
pub fn update_file(_path: &Path) -> Result<bool, String> {
    Ok(false)
}
