//! Which SAE a request names: a workspace SAE by name or folder, the active one, or an SAE from
//! elsewhere (imported into `WS/saes/<name>/`), each checked against the workspace's layer.

use super::Sae;
use super::formats::{load_sae, save_saelens};
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::store::Workspace;
use std::path::{Path, PathBuf};

/// The folder of the SAE that `--sae` names: an SAE of the workspace by name or by its folder,
/// or (None) the active one. An SAE folder or file from elsewhere is imported first (copied into
/// `saes/<its file name>/`), because its analyses are written beside it.
pub fn sae_home(ws: &Workspace, sae_arg: Option<&Path>) -> Result<PathBuf> {
    match sae_arg {
        None => ws.sae_home(None),
        Some(p) => {
            if let Some(home) = own_sae_dir(ws, Some(p))? {
                return Ok(home);
            }
            if !p.exists() {
                if plain_name(p).is_none() {
                    return Err(Error::Invalid(format!(
                        "{}: no such SAE file or folder",
                        p.display()
                    )));
                }
                // Neither a name nor a path: report it as a name (the error lists the SAEs).
                return ws.sae_home(Some(&p.to_string_lossy()));
            }
            // A SAELens weights file stands for its folder (and gives the SAE its name).
            let folder = crate::sae::formats::saelens_folder_of(p);
            let p = folder.as_deref().unwrap_or(p);
            let inside = std::fs::canonicalize(p)
                .ok()
                .zip(std::fs::canonicalize(ws.saes_dir()).ok())
                .is_some_and(|(p, saes)| p.parent() == Some(saes.as_path()));
            if inside {
                return Ok(p.to_path_buf());
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "imported".into());
            import_sae(ws, p, &name)
        }
    }
}

/// The folder of the workspace's own SAE that `sae_arg` names (None: the active one); None when
/// it names no SAE of the workspace (a folder from elsewhere, which [`sae_home`] would import).
/// Reads only.
pub fn own_sae_dir(ws: &Workspace, sae_arg: Option<&Path>) -> Result<Option<PathBuf>> {
    match sae_arg {
        None => ws.sae_home(None).map(Some),
        Some(p) => Ok(plain_name(p)
            .map(|name| ws.sae_dir(name))
            .filter(|home| home.join("cfg.json").is_file())),
    }
}

/// A one-component path that can be an SAE name.
fn plain_name(p: &Path) -> Option<&str> {
    let mut c = p.components();
    match (c.next(), c.next()) {
        (Some(std::path::Component::Normal(n)), None) => n.to_str(),
        _ => None,
    }
}

/// Copies the SAE in `from` (any supported format) into `WS/saes/<name>/` in SAELens layout and
/// returns that folder. Importing the same weights again is a no-op; a different SAE under an
/// existing name is refused (nothing is overwritten).
pub fn import_sae(ws: &Workspace, from: &Path, name: &str) -> Result<PathBuf> {
    crate::store::workspace::check_sae_name(name)?;
    let sae = checked_sae(ws, &load_sae(from)?, from)?;
    let home = ws.sae_dir(name);
    if home.join("cfg.json").is_file() {
        let existing = load_sae(&home)?;
        if existing.fingerprint() == sae.fingerprint() {
            return Ok(home);
        }
        return Err(Error::Workspace(format!(
            "{} already holds another SAE called `{name}`; it is kept. Copy {} to a folder of \
             another name and pass that",
            ws.dir.display(),
            from.display()
        )));
    }
    save_saelens(&sae, &home)?;
    Ok(home)
}

/// The SAE that `--sae` names (see [`sae_home`]; a folder from elsewhere is read in place, not
/// imported), checked against the workspace's layer width and position interpolation.
pub fn workspace_sae(ws: &Workspace, sae_path: Option<&Path>) -> Result<Sae> {
    let p: PathBuf = match (own_sae_dir(ws, sae_path)?, sae_path) {
        (Some(home), _) => home,
        (None, Some(p)) if p.exists() => p.to_path_buf(),
        (None, p) => ws.sae_home(p.map(|p| p.to_string_lossy()).as_deref())?,
    };
    checked_sae(ws, &load_sae(&p)?, &p)
}

/// `sae` if it fits the workspace's layer (width, position interpolation).
fn checked_sae(ws: &Workspace, sae: &Sae, p: &Path) -> Result<Sae> {
    let sae = sae.clone();

    sae.check_fits(
        ws.config.backbone.d_model,
        &format!("layer {} of {}", ws.config.layer, ws.config.backbone.name),
    )?;
    // D7: an SAE of block 5 (SAELens `blocks.5.…`) read a layer-3 workspace without a word.
    if let Some(block) = sae
        .meta
        .hook_name
        .as_deref()
        .and_then(super::formats::hook_block)
        && block != ws.config.layer
    {
        return Err(crate::fixable!(
            [
                p,
                format!(
                    ": its hook_name `{}` taps block {block}, but this workspace holds layer {}",
                    sae.meta.hook_name.as_deref().unwrap_or_default(),
                    ws.config.layer
                )
            ],
            ["use a workspace extracted at layer ", block.to_string()]
        ));
    }
    let ws_interp = ws.config.backbone.pos_interpolation.map(|p| p.as_str());
    if let (Some(trained), Some(here)) = (sae.meta.pos_interpolation.as_deref(), ws_interp)
        && trained != here
    {
        return Err(crate::fixable!(
            [
                p,
                format!(
                    ": this SAE was trained on activations with `{trained}` position \
                     interpolation, but the workspace uses `{here}`"
                )
            ],
            [
                "re-extract with ",
                Opt::PosInterpolation,
                format!(" {trained}")
            ]
        ));
    }
    Ok(sae)
}
