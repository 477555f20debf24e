//! Settings of a plan that are not part of the spec, and their checks.

use super::PlanError;
use std::time::Duration;

/// Settings that shape the rendered configuration but are not part of the spec.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Parallel jobs, for `MAKEOPTS` and emerge's `--jobs`.
    pub jobs: usize,
    /// emerge's `--load-average` (and make's `-l`): start no new job while the load average is at least this.
    ///
    /// `None` (the default) passes no `--load-average` to emerge and `-l JOBS` to make. emerge delays every job
    /// start by up to 5 s in proportion to the load when this is set, which on a small machine serialises builds of
    /// small packages; set it when the builder shares the machine with other work.
    pub load_average: Option<f64>,
    /// Merge the binary packages that need no ebuild phase into the rootfs directly, instead of one Portage merge
    /// each (on by default; see [`crate::cache::DIRECT_MERGE_SUFFIX`]). Packages that define `pkg_setup`,
    /// `pkg_preinst`, `pkg_postinst` or `pkg_pretend`, and every package when the builder has bashrc hooks or
    /// FEATURES that act in those phases, are merged by emerge either way. Off: every package goes through emerge.
    pub direct_merge: bool,
    /// A binhost download that receives no byte for this long fails (default
    /// [`DEFAULT_FETCH_IDLE_TIMEOUT`](crate::binhost::DEFAULT_FETCH_IDLE_TIMEOUT); whole seconds, at least 1).
    pub binhost_idle_timeout: Duration,
    /// A binhost download that takes longer than this in all fails (default
    /// [`DEFAULT_FETCH_TIMEOUT`](crate::binhost::DEFAULT_FETCH_TIMEOUT); whole seconds, at least 1).
    pub binhost_timeout: Duration,
}

impl PlanOptions {
    /// Options with `jobs` parallel jobs (one per CPU when `None`) and an optional load-average limit.
    pub fn new(jobs: Option<usize>, load_average: Option<f64>) -> Self {
        jobs.map(Self::with_jobs)
            .unwrap_or_default()
            .load_average(load_average)
    }

    /// Options with `jobs` parallel jobs (at least 1) and no load-average limit.
    pub fn with_jobs(jobs: usize) -> Self {
        Self {
            jobs: jobs.max(1),
            load_average: None,
            direct_merge: true,
            binhost_idle_timeout: crate::binhost::DEFAULT_FETCH_IDLE_TIMEOUT,
            binhost_timeout: crate::binhost::DEFAULT_FETCH_TIMEOUT,
        }
    }

    /// The same options with the direct merge of phase-less binary packages on or off
    /// ([`PlanOptions::direct_merge`]).
    pub fn direct_merge(mut self, on: bool) -> Self {
        self.direct_merge = on;
        self
    }

    /// The same options with emerge's `--load-average` set to `load` (`None`: no limit).
    ///
    /// [`BuildPlan::new`](super::BuildPlan::new) refuses a value that is not a finite number above 0.
    pub fn load_average(mut self, load: Option<f64>) -> Self {
        self.load_average = load;
        self
    }

    /// The same options with binhost downloads failing after `idle` without a byte or `total` in all
    /// ([`PlanOptions::binhost_idle_timeout`], [`PlanOptions::binhost_timeout`]).
    pub fn binhost_timeouts(mut self, idle: Duration, total: Duration) -> Self {
        self.binhost_idle_timeout = idle;
        self.binhost_timeout = total;
        self
    }

    /// Check the options: a load-average limit, when set, must be a finite number above 0; the binhost timeouts
    /// at least 1 s.
    pub fn check(&self) -> Result<(), PlanError> {
        if let Some(load) = self.load_average {
            check_load_average(load)?;
        }
        for (name, value) in [
            ("binhost idle timeout", self.binhost_idle_timeout),
            ("binhost timeout", self.binhost_timeout),
        ] {
            if value < Duration::from_secs(1) {
                return Err(PlanError::InvalidTimeout {
                    name: name.to_owned(),
                    millis: value.as_millis(),
                });
            }
        }
        Ok(())
    }

    /// make's `-l` value: the load-average limit when one is set (and valid), the job count otherwise.
    ///
    /// An invalid limit never reaches a build: [`BuildPlan::new`](super::BuildPlan::new) refuses it first.
    pub(crate) fn make_load(&self) -> String {
        match self.load_average.map(check_load_average) {
            Some(Ok(load)) => format_load(load),
            _ => self.jobs.to_string(),
        }
    }
}

/// A load average as Portage and make read it: `2`, `2.5` (Rust prints no exponent and no `.0`).
pub(crate) fn format_load(load: f64) -> String {
    format!("{load}")
}

impl Default for PlanOptions {
    /// One job per available CPU.
    fn default() -> Self {
        let jobs = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        Self::with_jobs(jobs)
    }
}

/// `load` when it is a usable load-average limit (a finite number above 0), else [`PlanError::InvalidLoadAverage`].
pub fn check_load_average(load: f64) -> Result<f64, PlanError> {
    if load.is_finite() && load > 0.0 {
        Ok(load)
    } else {
        Err(PlanError::InvalidLoadAverage { value: load })
    }
}

impl crate::portage::BuildEnv {
    /// Render the configuration for `spec`, with the parallelism of `options`.
    ///
    /// The spec should have passed [`ImageSpec::validate`](crate::ImageSpec::validate): values are quoted for
    /// Portage, but only validation guarantees that nothing in them (a newline, a `"`) can break out of that
    /// quoting. [`crate::BuildPlan::new`] validates before it renders.
    pub fn render(spec: &crate::spec::ImageSpec, options: &PlanOptions) -> Self {
        Self::render_with(spec, options.jobs, &options.make_load())
    }
}
