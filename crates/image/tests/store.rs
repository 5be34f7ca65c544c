//! The image store against real parts: a docker-registry started by `tests/e2e/images.py`,
//! images and archives built by that module from busybox-static, real overlayfs mounts, and
//! busybox run in the mounted rootfs. Needs root (mount, chroot, mknod).

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use image::{ErrorKind, ImageStore, PullOptions, Reference};
use support::{is_mounted, python, python_json, run_in, MountGuard, Registry};

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn open_store(dir: &Path) -> ImageStore {
    ImageStore::open(dir).expect("open store")
}

/// Pushes the standard busybox image; returns (manifest digest, image id).
fn push_busybox(registry: &Registry, repo_tag: &str, options: &str) -> (String, String) {
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let out = python_json(&format!(
        r#"
import images, json
img = images.busybox_image()
digest = images.push("{hp}", "{repo}", "{tag}", img{options})
print(json.dumps([digest, img.id]))
"#,
        hp = registry.host_port
    ));
    (
        out[0].as_str().unwrap().to_string(),
        out[1].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_oci_gzip_mount_and_run_busybox() {
    let registry = Registry::start();
    let (manifest_digest, id) = push_busybox(&registry, "test/busybox:v1", "");
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    let name = format!("{}/test/busybox:v1", registry.host_port);
    let pulled = store
        .pull(&reference(&name), &PullOptions::default())
        .await
        .expect("pull");
    assert_eq!(pulled.id, id);
    assert_eq!(pulled.names, vec![name.clone()]);
    assert_eq!(
        pulled.repo_digests,
        vec![format!(
            "{}/test/busybox@{manifest_digest}",
            registry.host_port
        )]
    );
    assert_eq!(pulled.layers.len(), 1);
    assert_eq!(pulled.config.cmd, Some(vec!["sh".to_string()]));
    assert!(pulled.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(pulled.size > 900_000, "size {}", pulled.size);

    // By name, by repo digest, by id; list.
    assert_eq!(
        store.get(&reference(&name)).unwrap().as_ref(),
        Some(&pulled)
    );
    let by_digest = format!("{}/test/busybox@{manifest_digest}", registry.host_port);
    assert_eq!(
        store.get(&reference(&by_digest)).unwrap().as_ref(),
        Some(&pulled)
    );
    assert_eq!(store.get_by_id(&id).unwrap().as_ref(), Some(&pulled));
    assert_eq!(
        store
            .get(&reference(&format!(
                "{}/test/busybox:other",
                registry.host_port
            )))
            .unwrap(),
        None
    );
    assert_eq!(store.list().unwrap(), vec![pulled.clone()]);

    // Mount, run busybox, write into the rootfs, unmount.
    let container = tempfile::tempdir().unwrap();
    let guard = MountGuard(container.path().to_path_buf());
    let rootfs = store
        .mount_rootfs(&pulled, container.path())
        .expect("mount");
    assert_eq!(rootfs, container.path().join("rootfs"));
    assert!(is_mounted(&rootfs));
    // Idempotent: a second mount keeps the first.
    assert_eq!(
        store.mount_rootfs(&pulled, container.path()).unwrap(),
        rootfs
    );
    assert_eq!(run_in(&rootfs, &["echo", "hi"]), "hi\n");
    assert!(run_in(&rootfs, &["cat", "/var/www/index.html"]).contains("hello from peapod"));
    assert!(run_in(&rootfs, &["cat", "/etc/passwd"]).contains("nobody:x:65534:65534"));
    let tmp_mode = fs::metadata(rootfs.join("tmp")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&tmp_mode.permissions()) & 0o7777,
        0o1777
    );
    run_in(&rootfs, &["sh", "-c", "echo written > /tmp/new"]);
    assert_eq!(
        fs::read_to_string(container.path().join("upper/tmp/new")).unwrap(),
        "written\n"
    );

    image::unmount_rootfs(container.path()).expect("unmount");
    assert!(!is_mounted(&rootfs));
    for d in ["rootfs", "upper", "work"] {
        assert!(!container.path().join(d).exists(), "{d} left behind");
    }
    // Idempotent, and fine for a dir never mounted.
    image::unmount_rootfs(container.path()).expect("second unmount");
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_docker_manifest_and_zstd_layers_share_unpacked_layer() {
    let registry = Registry::start();
    let (docker_digest, _) =
        push_busybox(&registry, "test/docker:v2", r#", manifest_format="docker""#);
    let out = python_json(&format!(
        r#"
import images, json
img = images.busybox_image(entrypoint=["/bin/sh", "-c"], cmd=["echo zstd"], working_dir="/tmp", user="65534", stop_signal="SIGUSR1")
print(json.dumps([images.push("{hp}", "test/zstd", "v1", img, compression="zstd"), img.id]))
"#,
        hp = registry.host_port
    ));
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    let docker = store
        .pull(
            &reference(&format!("{}/test/docker:v2", registry.host_port)),
            &PullOptions::default(),
        )
        .await
        .expect("pull docker manifest");
    assert_eq!(
        docker.repo_digests,
        vec![format!(
            "{}/test/docker@{docker_digest}",
            registry.host_port
        )]
    );
    let zstd = store
        .pull(
            &reference(&format!("{}/test/zstd:v1", registry.host_port)),
            &PullOptions::default(),
        )
        .await
        .expect("pull zstd");
    assert_eq!(zstd.id, out[1].as_str().unwrap());
    assert_eq!(
        zstd.config.entrypoint,
        Some(vec!["/bin/sh".to_string(), "-c".to_string()])
    );
    assert_eq!(zstd.config.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(zstd.config.user.as_deref(), Some("65534"));
    assert_eq!(zstd.config.stop_signal.as_deref(), Some("SIGUSR1"));
    // Same uncompressed layer: one unpacked directory.
    assert_eq!(zstd.layers, docker.layers);
    assert_eq!(fs::read_dir(root.path().join("layers")).unwrap().count(), 1);
    assert_eq!(store.list().unwrap().len(), 2);

    let container = tempfile::tempdir().unwrap();
    let _guard = MountGuard(container.path().to_path_buf());
    let rootfs = store.mount_rootfs(&zstd, container.path()).expect("mount");
    assert_eq!(run_in(&rootfs, &["echo", "from-zstd"]), "from-zstd\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_index_picks_linux_amd64() {
    let registry = Registry::start();
    let out = python_json(&format!(
        r#"
import images, json
def img(arch):
    marker = images.make_layer([images.directory("etc"), images.file("etc/arch", arch)])
    return images.Image(layers=[images.busybox_rootfs_layer(), marker], architecture=arch, cmd=["sh"])
platforms = [("linux", "arm64", img("arm64")), ("windows", "amd64", img("windows")), ("linux", "amd64", img("amd64")), ("linux", "s390x", img("s390x"))]
oci = images.push_index("{hp}", "test/multi", "oci", platforms)
docker = images.push_index("{hp}", "test/multi", "docker", platforms, manifest_format="docker")
print(json.dumps([oci, docker, img("amd64").id]))
"#,
        hp = registry.host_port
    ));
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    for (tag, index_digest) in [("oci", &out[0]), ("docker", &out[1])] {
        let image = store
            .pull(
                &reference(&format!("{}/test/multi:{tag}", registry.host_port)),
                &PullOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("pull {tag}: {e}"));
        assert_eq!(image.id, out[2].as_str().unwrap());
        assert!(image.repo_digests.contains(&format!(
            "{}/test/multi@{}",
            registry.host_port,
            index_digest.as_str().unwrap()
        )));
        let container = tempfile::tempdir().unwrap();
        let _guard = MountGuard(container.path().to_path_buf());
        let rootfs = store.mount_rootfs(&image, container.path()).expect("mount");
        assert_eq!(
            fs::read_to_string(rootfs.join("etc/arch")).unwrap(),
            "amd64"
        );
    }
    // Pull by index digest too.
    let by_digest = format!(
        "{}/test/multi@{}",
        registry.host_port,
        out[0].as_str().unwrap()
    );
    let image = store
        .pull(&reference(&by_digest), &PullOptions::default())
        .await
        .expect("pull by digest");
    assert_eq!(image.id, out[2].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_and_opaque_dirs_hide_lower_layers() {
    let registry = Registry::start();
    python(&format!(
        r#"
import images
top = images.make_layer([
    images.directory("etc"),
    images.whiteout("etc/hostname"),
    images.directory("var"),
    images.directory("var/www"),
    images.opaque("var/www"),
    images.file("var/www/new.html", "new"),
    images.directory("data", mode=0o750, uid=65534, gid=65534),
    images.file("data/owned", "x", mode=0o4755, uid=65534, gid=65534),
    images.hardlink("data/owned-link", "data/owned"),
    images.symlink("data/abs", "/etc/passwd"),
])
img = images.Image(layers=[images.busybox_rootfs_layer(), top], cmd=["sh"])
images.push("{hp}", "test/layered", "v1", img)
"#,
        hp = registry.host_port
    ));
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    let image = store
        .pull(
            &reference(&format!("{}/test/layered:v1", registry.host_port)),
            &PullOptions::default(),
        )
        .await
        .expect("pull");
    assert_eq!(image.layers.len(), 2);
    let container = tempfile::tempdir().unwrap();
    let _guard = MountGuard(container.path().to_path_buf());
    let rootfs = store.mount_rootfs(&image, container.path()).expect("mount");
    assert!(
        !rootfs.join("etc/hostname").exists(),
        "whiteout did not hide etc/hostname"
    );
    assert!(rootfs.join("etc/passwd").exists());
    let www: Vec<_> = fs::read_dir(rootfs.join("var/www"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        www,
        vec!["new.html".to_string()],
        "opaque dir still shows lower content"
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let owned = fs::metadata(rootfs.join("data/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (65534, 65534));
    assert_eq!(
        owned.permissions().mode() & 0o7777,
        0o4755,
        "setuid bit lost"
    );
    let link = fs::metadata(rootfs.join("data/owned-link")).unwrap();
    assert_eq!(link.ino(), owned.ino());
    assert_eq!(
        fs::read_link(rootfs.join("data/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::metadata(rootfs.join("data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(run_in(&rootfs, &["ls", "/var/www"]), "new.html\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_layer_is_rejected_and_leaves_nothing() {
    let registry = Registry::start();
    let out = python_json(&format!(
        r#"
import images, json
img = images.busybox_image()
_, _, blobs = img.manifest("oci", "gzip")
images.push("{hp}", "test/bad", "v1", img)
layer = [d for d in blobs if d != images.sha256(img.config_json())][0]
reg = images.Registry(None, "{hp}", __import__("pathlib").Path("{storage}"))
reg.corrupt_blob(layer)
print(json.dumps([layer]))
"#,
        hp = registry.host_port,
        storage = registry.storage().display()
    ));
    let layer_digest = out[0].as_str().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    let name = format!("{}/test/bad:v1", registry.host_port);
    let err = store
        .pull(&reference(&name), &PullOptions::default())
        .await
        .expect_err("corrupt pull");
    assert!(err.is_pull_error());
    assert_eq!(err.kind(), ErrorKind::InvalidContent, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("failed to pull and unpack image \"{name}\": ")),
        "{message}"
    );
    assert!(
        message.contains("unexpected commit digest") && message.contains(layer_digest),
        "{message}"
    );
    assert_eq!(store.list().unwrap(), vec![]);
    assert_eq!(fs::read_dir(root.path().join("layers")).unwrap().count(), 0);
    let blob_hex = layer_digest.strip_prefix("sha256:").unwrap();
    assert!(!root.path().join("blobs/sha256").join(blob_hex).exists());
    assert_eq!(
        fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0,
        "temp files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_image_and_unreachable_registry() {
    let registry = Registry::start();
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    let name = format!("{}/library/nope:latest", registry.host_port);
    let err = store
        .pull(&reference(&name), &PullOptions::default())
        .await
        .expect_err("unknown image");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        err.to_string(),
        format!("failed to pull and unpack image \"{name}\": failed to resolve reference \"{name}\": {name}: not found")
    );

    // Nothing listens on a port we bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("127.0.0.1:{port}/x:latest");
    let err = store
        .pull(&reference(&unreachable), &PullOptions::default())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("failed to do request"), "{err}");

    let err = Reference::parse("library/UPPER").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidReference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_images_and_concurrent_pulls_are_safe() {
    let registry = Registry::start();
    let (_, id) = push_busybox(&registry, "test/busybox:v1", "");
    let root = tempfile::tempdir().unwrap();
    let name = format!("{}/test/busybox:v1", registry.host_port);
    let pulled = {
        let store = Arc::new(open_store(root.path()));
        let r = reference(&name);
        let opts = PullOptions::default();
        let (a, b, c) = tokio::join!(
            store.pull(&r, &opts),
            store.pull(&r, &opts),
            store.pull(&r, &opts)
        );
        let a = a.expect("pull a");
        assert_eq!(b.expect("pull b"), a);
        assert_eq!(c.expect("pull c"), a);
        assert_eq!(store.list().unwrap().len(), 1);
        a
    };
    // Leftovers of a killed pull are cleared on open.
    fs::write(root.path().join("tmp/download-999-0"), b"half a blob").unwrap();
    let store = open_store(root.path());
    assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    assert_eq!(store.get(&reference(&name)).unwrap(), Some(pulled.clone()));
    assert_eq!(store.list().unwrap(), vec![pulled.clone()]);
    assert_eq!(pulled.id, id);
    let container = tempfile::tempdir().unwrap();
    let _guard = MountGuard(container.path().to_path_buf());
    let rootfs = store
        .mount_rootfs(&pulled, container.path())
        .expect("mount after restart");
    assert_eq!(run_in(&rootfs, &["echo", "hi"]), "hi\n");
}

#[test]
fn import_docker_and_oci_archives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let out = python_json(&format!(
        r#"
import images, json
img = images.busybox_image(cmd=["httpd", "-f"])
two = images.Image(layers=[images.busybox_rootfs_layer(), images.make_layer([images.file("marker", "two")])], cmd=["sh"])
images.write_docker_archive("{d}/docker.tar", img, ["busybox:docker", "example.com/team/bb:1"])
images.write_docker_archive("{d}/docker.tar.gz", two, ["localhost/two:v1"], gzip_outer=True)
oci = images.write_oci_archive("{d}/oci.tar", img, "docker.io/library/busybox:oci")
zstd = images.write_oci_archive("{d}/oci-zstd.tar", two, "latest", compression="zstd", containerd_name="registry.local/two:zstd")
print(json.dumps([img.id, two.id, oci, zstd]))
"#
    ));
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());

    let imported = store
        .import_archive(&dir.path().join("docker.tar"))
        .expect("docker archive");
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].id, out[0].as_str().unwrap());
    assert_eq!(
        imported[0].names,
        vec![
            "docker.io/library/busybox:docker".to_string(),
            "example.com/team/bb:1".to_string()
        ]
    );
    assert_eq!(
        imported[0].config.cmd,
        Some(vec!["httpd".to_string(), "-f".to_string()])
    );

    let two = store
        .import_archive(&dir.path().join("docker.tar.gz"))
        .expect("gzipped docker archive");
    assert_eq!(two[0].id, out[1].as_str().unwrap());
    assert_eq!(two[0].names, vec!["localhost/two:v1".to_string()]);

    let oci = store
        .import_archive(&dir.path().join("oci.tar"))
        .expect("oci archive");
    // Same config as the docker archive: one image with both names.
    assert_eq!(oci[0].id, out[0].as_str().unwrap());
    assert!(oci[0]
        .names
        .contains(&"docker.io/library/busybox:oci".to_string()));
    assert!(oci[0]
        .names
        .contains(&"docker.io/library/busybox:docker".to_string()));
    assert_eq!(
        oci[0].repo_digests,
        vec![format!(
            "docker.io/library/busybox@{}",
            out[2].as_str().unwrap()
        )]
    );

    let zstd = store
        .import_archive(&dir.path().join("oci-zstd.tar"))
        .expect("oci zstd archive");
    assert_eq!(zstd[0].id, out[1].as_str().unwrap());
    assert!(zstd[0]
        .names
        .contains(&"registry.local/two:zstd".to_string()));
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(
        store.get(&reference("busybox:oci")).unwrap().map(|i| i.id),
        Some(out[0].as_str().unwrap().to_string())
    );

    let container = tempfile::tempdir().unwrap();
    let _guard = MountGuard(container.path().to_path_buf());
    let image = store
        .get(&reference("localhost/two:v1"))
        .unwrap()
        .expect("two");
    let rootfs = store.mount_rootfs(&image, container.path()).expect("mount");
    assert_eq!(fs::read_to_string(rootfs.join("marker")).unwrap(), "two");
    assert_eq!(run_in(&rootfs, &["echo", "imported"]), "imported\n");

    let garbage = dir.path().join("garbage.tar");
    fs::write(&garbage, b"not a tarball at all").unwrap();
    assert!(store.import_archive(&garbage).is_err());
}

#[test]
fn many_layers_mount_with_relative_paths_and_empty_image_mounts() {
    // A deep store root makes absolute lowerdirs overflow the one-page mount options.
    let base = tempfile::tempdir().unwrap();
    let deep = base.path().join("d".repeat(100)).join("e".repeat(100));
    fs::create_dir_all(&deep).unwrap();
    let d = base.path().display();
    python(&format!(
        r#"
import images
layers = [images.busybox_rootfs_layer()] + [images.make_layer([images.file(f"layer{{i:02d}}", str(i)), images.file("top", str(i))]) for i in range(30)]
images.write_docker_archive("{d}/many.tar", images.Image(layers=layers, cmd=["sh"]), ["many:layers"])
images.write_docker_archive("{d}/empty.tar", images.Image(layers=[], cmd=["sh"]), ["empty:v1"])
"#
    ));
    let store = open_store(&deep);
    let many = store
        .import_archive(&base.path().join("many.tar"))
        .expect("import many")[0]
        .clone();
    assert_eq!(many.layers.len(), 31);
    let container = tempfile::tempdir().unwrap();
    let guard = MountGuard(container.path().to_path_buf());
    let rootfs = store
        .mount_rootfs(&many, container.path())
        .expect("mount many layers");
    assert_eq!(fs::read_to_string(rootfs.join("layer00")).unwrap(), "0");
    assert_eq!(fs::read_to_string(rootfs.join("layer29")).unwrap(), "29");
    assert_eq!(
        fs::read_to_string(rootfs.join("top")).unwrap(),
        "29",
        "top layer must win"
    );
    assert_eq!(run_in(&rootfs, &["echo", "deep"]), "deep\n");
    drop(guard);
    assert!(!is_mounted(&container.path().join("rootfs")));

    let empty = store
        .import_archive(&base.path().join("empty.tar"))
        .expect("import empty")[0]
        .clone();
    assert!(empty.layers.is_empty());
    let container = tempfile::tempdir().unwrap();
    let _guard = MountGuard(container.path().to_path_buf());
    let rootfs = store
        .mount_rootfs(&empty, container.path())
        .expect("mount empty image");
    assert!(is_mounted(&rootfs));
    fs::write(rootfs.join("file"), b"x").unwrap();
    assert_eq!(fs::read_dir(&rootfs).unwrap().count(), 1);
    assert!(container.path().join("upper/file").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registry_needs_credentials() {
    let registry = Registry::start_with_auth("peapod:s3cret");
    python(&format!(
        r#"
import images
images.CREDENTIALS["{hp}"] = ("peapod", "s3cret")
images.push("{hp}", "private/busybox", "v1", images.busybox_image())
"#,
        hp = registry.host_port
    ));
    let root = tempfile::tempdir().unwrap();
    let store = open_store(root.path());
    let r = reference(&format!("{}/private/busybox:v1", registry.host_port));

    let err = store
        .pull(&r, &PullOptions::default())
        .await
        .expect_err("anonymous pull");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(err.to_string().contains("pull access denied"), "{err}");

    let wrong = PullOptions {
        credentials: Some(image::Credentials {
            username: "peapod".into(),
            password: "wrong".into(),
        }),
        ..PullOptions::default()
    };
    let err = store.pull(&r, &wrong).await.expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");

    let right = PullOptions {
        credentials: Some(image::Credentials {
            username: "peapod".into(),
            password: "s3cret".into(),
        }),
        ..PullOptions::default()
    };
    let image = store.pull(&r, &right).await.expect("authenticated pull");
    assert_eq!(image.names, vec![r.to_string()]);
}
