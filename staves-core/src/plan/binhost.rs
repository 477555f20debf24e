//! The binhost contribution to a plan: the `binrepos.conf` file and the step that fetches binary packages before
//! anything is emerged (see [`crate::binhost`]).

use super::{BuildPlan, Step, StepKind};
use crate::binhost::{
    BINREPOS_FILE, BinhostError, check_binhost_url, fetch_script, merge_binhost_urls,
    render_binrepos_conf,
};
use crate::portage::{PortageFile, WriteMode};
use std::collections::BTreeMap;

impl BuildPlan {
    /// Make the build fetch binary packages from `urls` (tried in order) before it emerges anything; see the
    /// [binhost docs](crate::binhost). The plan's own binhosts (the spec's `[build] binhost`) come after `urls`, and a URL
    /// given twice is used once ([`merge_binhost_urls`]). No new URLs: the plan is unchanged.
    pub fn with_binhosts(mut self, urls: &[String]) -> Result<Self, BinhostError> {
        for url in urls {
            check_binhost_url(url)?;
        }
        let all = merge_binhost_urls(urls, &self.binhosts);
        if all != self.binhosts {
            self.set_binhosts(all);
        }
        Ok(self)
    }

    /// Fetch from `urls` (already checked) instead of the plan's current binhosts: the `binrepos.conf` file and
    /// the fetch step are written anew (none when `urls` is empty). A plan without emerge steps (the resolution of
    /// `staves lock`) builds nothing and is left as it is.
    pub(crate) fn set_binhosts(&mut self, urls: Vec<String>) {
        let emerges: Vec<&Step> = self
            .steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::BuildDeps | StepKind::Rootfs))
            .collect();
        if emerges.is_empty() || (urls.is_empty() && self.binhosts.is_empty()) {
            return;
        }
        let commands: Vec<&[String]> = emerges
            .iter()
            .map(|s| crate::cache::unwrapped_argv(&s.argv))
            .collect();
        let env = emerges
            .first()
            .map(|s| s.env.clone())
            .unwrap_or_else(|| BTreeMap::from([("NOCOLOR".to_owned(), "true".to_owned())]));
        let fetch = (!urls.is_empty()).then(|| Step {
            kind: StepKind::FetchBinaries,
            label: format!(
                "Fetch binary packages from {}",
                if urls.len() == 1 {
                    urls[0].clone()
                } else {
                    format!("{} binhosts", urls.len())
                }
            ),
            argv: vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                fetch_script(
                    &commands,
                    self.fetch_timeouts.idle,
                    self.fetch_timeouts.total,
                ),
            ],
            env,
            background: false,
            wait_background: false,
            skip_if: None,
        });
        self.steps.retain(|s| s.kind != StepKind::FetchBinaries);
        self.files.retain(|f| f.path != BINREPOS_FILE);
        if !urls.is_empty() {
            self.files.push(PortageFile {
                path: BINREPOS_FILE.to_owned(),
                content: render_binrepos_conf(&urls),
                mode: WriteMode::Replace,
            });
        }
        if let Some(write) = self
            .steps
            .iter_mut()
            .find(|s| s.kind == StepKind::WriteFiles)
        {
            write.argv = vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                crate::plan::install_files_script(&self.files),
            ];
        }
        if let Some(fetch) = fetch {
            // Right after the configuration and the repository syncs, before any other step: whatever inspects
            // the binary packages of the cache before the emerge steps (the environment check) then sees the
            // fetched ones.
            let at = self
                .steps
                .iter()
                .rposition(|s| matches!(s.kind, StepKind::WriteFiles | StepKind::Sync { .. }))
                .map_or(0, |i| i + 1);
            self.steps.insert(at, fetch);
        }
        self.binhosts = urls;
    }
}
