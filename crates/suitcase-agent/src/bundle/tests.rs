use super::*;

#[test]
fn member_paths_stay_inside_the_bundle() {
    for ok in ["index.json", "releases/0/envelope.suit"] {
        assert!(check_path(ok).is_ok(), "{ok}");
    }
    for bad in ["", "/etc/passwd", "../x", "releases/../../x", "./a", "a\\b"] {
        assert!(check_path(bad).is_err(), "{bad}");
    }
}
