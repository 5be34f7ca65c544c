//! Pinned network namespaces under a plain directory (no special mount propagation).

use std::os::unix::fs::MetadataExt;

use cni::netns;

fn own_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

struct Pin(std::path::PathBuf);

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = netns::remove(&self.0);
    }
}

#[test]
fn create_pins_a_new_namespace_without_touching_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin(dir.path().join("a/b/podns"));
    let before = own_netns_inode();

    assert!(!netns::exists(&pin.0));
    netns::create(&pin.0).unwrap();
    assert!(netns::exists(&pin.0));
    assert_eq!(own_netns_inode(), before, "the caller's namespace changed");
    let pinned_inode = std::fs::metadata(&pin.0).unwrap().ino();
    assert_ne!(pinned_inode, before, "the pin is the host namespace");

    // Idempotent: the same namespace stays pinned.
    netns::create(&pin.0).unwrap();
    assert_eq!(std::fs::metadata(&pin.0).unwrap().ino(), pinned_inode);

    // A fresh namespace has only a (down) loopback.
    let links = std::process::Command::new("nsenter")
        .arg(format!("--net={}", pin.0.display()))
        .args(["/usr/bin/busybox", "ip", "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");

    netns::remove(&pin.0).unwrap();
    assert!(!netns::exists(&pin.0));
    assert!(!pin.0.exists());
    netns::remove(&pin.0).unwrap();
}

#[test]
fn a_plain_file_is_not_a_namespace_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pin(dir.path().join("stale"));
    std::fs::write(&pin.0, b"").unwrap();
    assert!(!netns::exists(&pin.0));
    netns::create(&pin.0).unwrap();
    assert!(netns::exists(&pin.0));
    netns::remove(&pin.0).unwrap();
    assert!(!pin.0.exists());
}

#[test]
fn many_pins_in_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pins: Vec<Pin> = (0..4)
        .map(|i| Pin(dir.path().join(format!("ns{i}"))))
        .collect();
    for pin in &pins {
        netns::create(&pin.0).unwrap();
    }
    let inodes: std::collections::HashSet<u64> = pins
        .iter()
        .map(|p| std::fs::metadata(&p.0).unwrap().ino())
        .collect();
    assert_eq!(inodes.len(), pins.len(), "namespaces are not distinct");
    for pin in &pins {
        netns::remove(&pin.0).unwrap();
        assert!(!netns::exists(&pin.0));
    }
}
