//! What a container runs: the image's Entrypoint/Cmd/Env/WorkingDir merged with the
//! container's `command`/`args`/`env`/`workingDir`, with `$(VAR)` references expanded, as
//! upstream does. Pure functions.

use k8s_openapi::api::core::v1::{Container, Pod};

/// Expands `$(NAME)` from `lookup`; `$$` is a literal `$`; unknown references stay as written
/// (upstream's `third_party/forked/golang/expansion`).
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut literal_start = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push_str(&input[literal_start..i]);
                    out.push('$');
                    i += 2;
                    literal_start = i;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        out.push_str(&input[literal_start..i]);
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        literal_start = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[literal_start..]);
    out
}

/// The process a container runs, per upstream's rules: `command` replaces the image's
/// Entrypoint (and drops its Cmd); `args` replaces Cmd.
pub fn process_args(
    container: &Container,
    entrypoint: &[String],
    cmd: &[String],
    env: &[(String, String)],
) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expand_all = |v: &[String]| v.iter().map(|s| expand(s, &lookup)).collect::<Vec<_>>();
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut out = expand_all(command);
            out.extend(expand_all(args.as_deref().unwrap_or_default()));
            out
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut out = entrypoint.to_vec();
            out.extend(expand_all(args));
            out
        }
        _ => {
            let mut out = entrypoint.to_vec();
            out.extend(cmd.iter().cloned());
            out
        }
    }
}

/// `KEY=VALUE` strings split into pairs (image config form).
pub fn split_env(image_env: &[String]) -> Vec<(String, String)> {
    image_env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// Sets `key`, replacing an earlier value in place (so image defaults keep their position).
pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key.to_string(), value)),
    }
}

/// The value of a `fieldRef` the node knows without other objects.
pub fn field_ref(pod: &Pod, path: &str, pod_ip: Option<&str>, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => pod_ip.unwrap_or_default().to_string(),
        "status.podIPs" => pod_ip.unwrap_or_default().to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            let key = |p: &str| {
                p.strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .map(|k| k.trim_matches('\'').to_string())
            };
            if let Some(k) = path.strip_prefix("metadata.labels").and_then(key) {
                return meta.labels.as_ref()?.get(&k).cloned();
            }
            if let Some(k) = path.strip_prefix("metadata.annotations").and_then(key) {
                return meta.annotations.as_ref()?.get(&k).cloned();
            }
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "1".into()), ("B".into(), "two".into())]
    }

    fn lookup(name: &str) -> Option<String> {
        env().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    #[test]
    fn expands_references_and_escapes() {
        assert_eq!(expand("x$(A)y$(B)", &lookup), "x1ytwo");
        assert_eq!(expand("$(MISSING) stays", &lookup), "$(MISSING) stays");
        assert_eq!(expand("$$(A) is escaped", &lookup), "$(A) is escaped");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("cost $5", &lookup), "cost $5");
        assert_eq!(expand("ünï$(A)ç", &lookup), "ünï1ç");
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Container {
            command: command.map(own),
            args: args.map(own),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_merge_with_the_image_like_upstream() {
        let ep = vec!["/entry".to_string()];
        let cmd = vec!["default".to_string()];
        let e = env();
        assert_eq!(
            process_args(&container(None, None), &ep, &cmd, &e),
            ["/entry", "default"]
        );
        assert_eq!(
            process_args(&container(None, Some(&["x", "$(A)"])), &ep, &cmd, &e),
            ["/entry", "x", "1"]
        );
        assert_eq!(
            process_args(&container(Some(&["sh", "-c"]), None), &ep, &cmd, &e),
            ["sh", "-c"]
        );
        assert_eq!(
            process_args(&container(Some(&["echo"]), Some(&["$(B)"])), &ep, &cmd, &e),
            ["echo", "two"]
        );
    }
}
