//! The `docker` adapter: runs a job in a container through the local Docker
//! daemon (bollard), locked down by default.
//!
//! What every container gets, whatever the job asks: no network unless the
//! job asks and the provider allows it; the job's memory (swap off), CPU and
//! pids limits; a read-only root with a tmpfs `/tmp`; no-new-privileges; all
//! capabilities dropped; a non-root user unless the provider configures
//! another; a hard timeout; bounded stdout/stderr; the files written to
//! `/outputs` collected; and removal of the container whatever happened.
//! Containers carry the label `modchain.managed=true`, so ones left behind by
//! a crashed node are found and removed at start-up.

use crate::adapter::{
    Adapter, AdapterError, BoxFuture, ExecutionContext, LogStream, MethodSpec, unknown_method,
};
use crate::outputs;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;
use modchain_protocol::{ExecutionReport, ExitStatus, Usage, limits};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The label that marks containers as ours.
pub const MANAGED_LABEL: &str = "modchain.managed";
/// The label holding the job id.
pub const JOB_LABEL: &str = "modchain.job";
/// The label holding the id of the node that started the container: several
/// nodes may share one daemon (a devnet does), and each cleans up only its own.
pub const NODE_LABEL: &str = "modchain.node";

/// Provider-side policy for the docker adapter (`[docker]` in config.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerConfig {
    /// Pull images that are not present (off: only local images run).
    pub allow_pull: bool,
    /// Image name patterns allowed to run (`*` matches any suffix); empty
    /// allows none, so that a job can never run an image of the operator's
    /// own (and read what is baked into it) unless the operator says so.
    pub allowed_images: Vec<String>,
    /// Run only images named by digest (`name@sha256:<64 hex>`), and only
    /// when the local image has that digest (its id, or a repo digest).
    pub require_digest: bool,
    /// Whether jobs that ask for network access may have it.
    pub allow_network: bool,
    /// The user jobs run as (`uid:gid`), unless the job's image needs root and the provider allows it.
    pub user: String,
    /// Size of the writable `/tmp`.
    pub tmpfs_size: String,
    /// This node's id, put on every container it starts.
    pub node: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            allow_pull: false,
            allowed_images: Vec::new(),
            require_digest: false,
            allow_network: false,
            user: "65534:65534".into(),
            tmpfs_size: "64m".into(),
            node: String::new(),
        }
    }
}

/// Parameters of the `run` method.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    pub image: String,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// Ask for network access (granted only if the provider allows it).
    #[serde(default)]
    pub network: bool,
    #[serde(default)]
    pub workdir: Option<String>,
}

/// Longest image reference, command and environment accepted.
const MAX_IMAGE_BYTES: usize = 256;
const MAX_ARGS: usize = 256;
const MAX_ENV: usize = 128;

#[derive(Clone, Debug)]
pub struct DockerAdapter {
    docker: Docker,
    config: DockerConfig,
    /// References of the images present on the daemon as last listed
    /// (`None` until listed): tags, repo digests, and each tag and
    /// repository `@` the image id, so `validate` can refuse a missing
    /// image, by tag or by digest, without asking the daemon.
    images: Arc<RwLock<Option<HashSet<String>>>>,
}

/// The digest of a `name@sha256:<64 hex>` reference, and the name before it.
fn split_digest(image: &str) -> Option<(&str, &str)> {
    let (name, digest) = image.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    let well_formed = !name.is_empty()
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then_some((name, digest))
}

/// `name:tag` → `name`: the repository of a reference without its digest.
fn repository(name: &str) -> &str {
    match name.rsplit_once(':') {
        // A colon after the last slash separates the tag, not a registry port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// `name` → `name:latest`, as Docker reads a reference without a tag.
fn with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

impl DockerAdapter {
    /// Connects to the local daemon (`DOCKER_HOST` or the default socket).
    pub fn connect(config: DockerConfig) -> Result<Self, AdapterError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        Ok(DockerAdapter {
            docker,
            config,
            images: Arc::new(RwLock::new(None)),
        })
    }

    /// Lists the images present on the daemon, for `validate`. Call at
    /// start-up and now and then; returns how many tags there are.
    pub async fn refresh_images(&self) -> Result<usize, AdapterError> {
        let list = self
            .docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        let mut tags: HashSet<String> = HashSet::new();
        for image in list {
            for tag in &image.repo_tags {
                tags.insert(format!("{tag}@{}", image.id));
                tags.insert(format!("{}@{}", repository(tag), image.id));
            }
            tags.extend(image.repo_digests);
            tags.extend(image.repo_tags);
        }
        let n = tags.len();
        if let Ok(mut held) = self.images.write() {
            *held = Some(tags);
        }
        Ok(n)
    }

    /// Whether the image is known to be absent (false while never listed).
    fn known_absent(&self, image: &str) -> bool {
        if self.config.allow_pull || image.starts_with("sha256:") {
            return false;
        }
        self.images
            .read()
            .ok()
            .and_then(|held| held.as_ref().map(|tags| !tags.contains(&with_tag(image))))
            .unwrap_or(false)
    }

    /// The id of the image present under `name` (a tag), as last listed.
    fn local_id(&self, name: &str) -> Option<String> {
        let prefix = format!("{}@", with_tag(name));
        let held = self.images.read().ok()?;
        held.as_ref()?
            .iter()
            .find_map(|r| r.strip_prefix(&prefix).map(String::from))
    }

    /// Checks that the daemon answers; returns its version.
    pub async fn ping(&self) -> Result<String, AdapterError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| AdapterError::RuntimeUnavailable(e.to_string()))?;
        Ok(v.version.unwrap_or_default())
    }

    /// Removes containers this node left behind when it last stopped
    /// (crashed, or killed). Returns how many.
    pub async fn remove_orphans(&self) -> Result<usize, AdapterError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{MANAGED_LABEL}=true"),
                format!("{NODE_LABEL}={}", self.config.node),
            ],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| AdapterError::Runtime(e.to_string()))?;
        let mut removed = 0;
        for c in list {
            if let Some(id) = c.id {
                self.remove(&id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn remove(&self, name: &str) {
        let r = self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
        match r {
            Ok(()) => {}
            // Nothing to remove: the usual case before a job starts.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => tracing::warn!(container = name, error = %e, "could not remove container"),
        }
    }

    /// Whether a pattern of `allowed_images` matches: none when the list
    /// is empty.
    fn image_allowed(&self, image: &str) -> bool {
        self.config
            .allowed_images
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => image == p,
            })
    }

    /// With `require_digest`, the image the daemon holds under the
    /// reference, checked to have the digest named: its id (an image built
    /// or imported here) or one of its repo digests (an image pulled).
    /// Returns the image id to create the container from, so that a tag
    /// moved meanwhile cannot change what runs.
    async fn pinned_image(&self, image: &str) -> Result<String, AdapterError> {
        let Some((name, digest)) = split_digest(image) else {
            return Err(AdapterError::DigestRequired {
                image: image.to_string(),
            });
        };
        let inspected = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            // An image imported or built here has no repo digest: look it
            // up by name, then compare its id.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => match self.docker.inspect_image(&with_tag(name)).await {
                Ok(i) => i,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Err(AdapterError::ImageNotPresent(image.to_string())),
                Err(e) => return Err(AdapterError::RuntimeUnavailable(e.to_string())),
            },
            Err(e) => return Err(AdapterError::RuntimeUnavailable(e.to_string())),
        };
        let id = inspected.id.unwrap_or_default();
        let repo = repository(name);
        let matches = id == digest
            || inspected.repo_digests.unwrap_or_default().iter().any(|d| {
                split_digest(d).is_some_and(|(r, dg)| dg == digest && repository(r) == repo)
            });
        if !matches {
            return Err(AdapterError::DigestMismatch {
                image: image.to_string(),
                found: id,
            });
        }
        Ok(id)
    }

    fn parse(&self, method: &str, params: &serde_json::Value) -> Result<RunParams, AdapterError> {
        if method != "run" {
            return Err(unknown_method(self, method));
        }
        let p: RunParams = serde_json::from_value(params.clone())
            .map_err(|e| AdapterError::InvalidParams(e.to_string()))?;
        if p.image.is_empty() || p.image.len() > MAX_IMAGE_BYTES {
            return Err(AdapterError::InvalidParams(format!(
                "`image` must be 1 to {MAX_IMAGE_BYTES} bytes"
            )));
        }
        if p.cmd.len() > MAX_ARGS || p.env.len() > MAX_ENV {
            return Err(AdapterError::InvalidParams(format!(
                "at most {MAX_ARGS} command arguments and {MAX_ENV} environment variables"
            )));
        }
        if p.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return Err(AdapterError::InvalidParams(
                "environment variable names must be non-empty and contain no `=`".into(),
            ));
        }
        if !self.image_allowed(&p.image) {
            return Err(AdapterError::ImageNotAllowed {
                image: p.image,
                allowed: self.config.allowed_images.join(", "),
            });
        }
        if self.config.require_digest && split_digest(&p.image).is_none() {
            return Err(AdapterError::DigestRequired { image: p.image });
        }
        if p.network && !self.config.allow_network {
            return Err(AdapterError::NetworkNotAllowed);
        }
        if self.known_absent(&p.image) {
            // Named by a digest the image here does not have: say so.
            if let Some((name, _)) = split_digest(&p.image)
                && let Some(found) = self.local_id(name)
            {
                return Err(AdapterError::DigestMismatch {
                    image: p.image,
                    found,
                });
            }
            return Err(AdapterError::ImageNotPresent(p.image));
        }
        Ok(p)
    }

    async fn ensure_image(&self, image: &str) -> Result<(), AdapterError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                if !self.config.allow_pull {
                    return Err(AdapterError::ImageNotPresent(image.to_string()));
                }
                let mut pull = self.docker.create_image(
                    Some(CreateImageOptions {
                        from_image: Some(image.to_string()),
                        ..Default::default()
                    }),
                    None,
                    None,
                );
                while let Some(step) = pull.next().await {
                    step.map_err(|e| AdapterError::Runtime(format!("pulling {image}: {e}")))?;
                }
                Ok(())
            }
            Err(e) => Err(AdapterError::RuntimeUnavailable(e.to_string())),
        }
    }

    async fn run(
        &self,
        ctx: ExecutionContext,
        p: RunParams,
    ) -> Result<ExecutionReport, AdapterError> {
        // With `require_digest` the container is created from the image id
        // checked here; a pull (where allowed) verifies the digest itself.
        let image = if self.config.require_digest {
            match self.pinned_image(&p.image).await {
                Err(AdapterError::ImageNotPresent(_)) if self.config.allow_pull => {
                    self.ensure_image(&p.image).await?;
                    self.pinned_image(&p.image).await?
                }
                other => other?,
            }
        } else {
            self.ensure_image(&p.image).await?;
            p.image.clone()
        };
        prepare_output_dir(&ctx.output_dir)?;
        // Named by node and job: two providers sharing a daemon (a devnet,
        // or a re-auction to a neighbour) never touch each other's container.
        let node: String = self.config.node.chars().take(12).collect();
        let name = format!("modchain-{node}-{}", &ctx.job_id.to_hex()[..24]);
        // A container of the same name can only be our own leftover of this job.
        self.remove(&name).await;
        let network = p.network && ctx.limits.network;
        let memory = i64::try_from(ctx.limits.memory_bytes.max(6 << 20)).unwrap_or(i64::MAX);
        let host = HostConfig {
            memory: Some(memory),
            // Equal to memory: no swap, so the memory limit is a real limit.
            memory_swap: Some(memory),
            nano_cpus: Some(i64::from(ctx.limits.cores.max(1)) * 1_000_000_000),
            pids_limit: Some(i64::from(ctx.limits.pids.max(8))),
            network_mode: Some(if network { "bridge" } else { "none" }.into()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                format!("rw,nosuid,nodev,mode=1777,size={}", self.config.tmpfs_size),
            )])),
            security_opt: Some(vec!["no-new-privileges".into()]),
            cap_drop: Some(vec!["ALL".into()]),
            binds: Some(vec![format!("{}:/outputs:rw", ctx.output_dir.display())]),
            device_requests: (ctx.limits.gpus > 0).then(|| {
                vec![DeviceRequest {
                    driver: Some("nvidia".into()),
                    count: Some(i64::from(ctx.limits.gpus)),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: (!p.cmd.is_empty()).then(|| p.cmd.clone()),
            env: Some(p.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(self.config.user.clone()),
            working_dir: p.workdir.clone(),
            network_disabled: Some(!network),
            labels: Some(HashMap::from([
                (MANAGED_LABEL.to_string(), "true".to_string()),
                (JOB_LABEL.to_string(), ctx.job_id.to_hex()),
                (NODE_LABEL.to_string(), self.config.node.clone()),
            ])),
            host_config: Some(host),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| AdapterError::Runtime(format!("creating the container: {e}")))?;
        // From here on the container exists: remove it on every path.
        let outcome = self.supervise(&name, &ctx).await;
        self.remove(&name).await;
        let (exit, stdout, stderr, wall_ms) = outcome?;
        let outputs =
            outputs::collect(&ctx.output_dir).map_err(|source| AdapterError::OutputDir {
                path: ctx.output_dir.clone(),
                source,
            })?;
        Ok(ExecutionReport {
            exit: Some(exit),
            stdout,
            stderr,
            outputs,
            usage: Usage {
                wall_ms,
                ..Usage::default()
            },
        })
    }

    /// Starts the container, streams its logs, and waits for it to end, time
    /// out or be cancelled.
    async fn supervise(
        &self,
        name: &str,
        ctx: &ExecutionContext,
    ) -> Result<(ExitStatus, Vec<u8>, Vec<u8>, u64), AdapterError> {
        let started = Instant::now();
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| AdapterError::Runtime(format!("starting the container: {e}")))?;
        let mut logs = self.docker.logs(
            name,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            }),
        );
        let sink = ctx.logs.clone();
        let collect = async move {
            let (mut out, mut err) = (Tail::default(), Tail::default());
            while let Some(Ok(chunk)) = logs.next().await {
                match chunk {
                    bollard::container::LogOutput::StdOut { message } => {
                        sink.send(LogStream::Stdout, &message);
                        out.push(&message);
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        sink.send(LogStream::Stderr, &message);
                        err.push(&message);
                    }
                    _ => {}
                }
            }
            (out.0, err.0)
        };
        let collector = tokio::spawn(collect);
        let mut wait = self.docker.wait_container(name, None);
        let stopped = tokio::select! {
            r = wait.next() => match r {
                Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) | None => None,
                Some(Err(e)) => return Err(AdapterError::Runtime(format!("waiting for the container: {e}"))),
            },
            _ = tokio::time::sleep(ctx.timeout) => Some(ExitStatus::TimedOut),
            _ = ctx.cancel.cancelled() => Some(ExitStatus::Cancelled),
        };
        if stopped.is_some() {
            let _ = self
                .docker
                .kill_container(
                    name,
                    Some(KillContainerOptions {
                        signal: "KILL".into(),
                    }),
                )
                .await;
        }
        let wall_ms = started.elapsed().as_millis() as u64;
        let (stdout, stderr) = collector.await.unwrap_or_default();
        let exit = match stopped {
            Some(s) => s,
            None => {
                let info = self
                    .docker
                    .inspect_container(name, None)
                    .await
                    .map_err(|e| AdapterError::Runtime(format!("inspecting the container: {e}")))?;
                let state = info.state.unwrap_or_default();
                if state.oom_killed == Some(true) {
                    ExitStatus::OutOfMemory
                } else {
                    ExitStatus::Exited(state.exit_code.unwrap_or(-1) as i32)
                }
            }
        };
        Ok((exit, stdout, stderr, wall_ms))
    }
}

/// Keeps the last `MAX_LOG_BYTES` of a stream.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        let max = limits::MAX_LOG_BYTES;
        if self.0.len() > 2 * max {
            let cut = self.0.len() - max;
            self.0.drain(..cut);
        }
    }
}

fn prepare_output_dir(dir: &std::path::Path) -> Result<(), AdapterError> {
    let err = |source| AdapterError::OutputDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // The job runs as an unprivileged user that must be able to write here.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    }
    Ok(())
}

impl Adapter for DockerAdapter {
    fn name(&self) -> &str {
        "docker"
    }

    fn methods(&self) -> Vec<MethodSpec> {
        vec![MethodSpec {
            name: "run".into(),
            description: "Run a command in a container from an image present on the provider"
                .into(),
            params_schema: serde_json::json!({
                "type": "object",
                "required": ["image"],
                "additionalProperties": false,
                "properties": {
                    "image": {"type": "string", "maxLength": MAX_IMAGE_BYTES, "description": "image reference, present on the provider"},
                    "cmd": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_ARGS, "description": "command and arguments; the image's default if empty"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": MAX_ENV},
                    "network": {"type": "boolean", "default": false, "description": "ask for network access; granted only where the provider allows it"},
                    "workdir": {"type": "string"}
                }
            }),
        }]
    }

    fn validate(&self, method: &str, params: &serde_json::Value) -> Result<(), AdapterError> {
        self.parse(method, params).map(|_| ())
    }

    fn execute<'a>(
        &'a self,
        ctx: ExecutionContext,
        method: &'a str,
        params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ExecutionReport, AdapterError>> {
        Box::pin(async move {
            let p = self.parse(method, params)?;
            self.run(ctx, p).await
        })
    }
}
