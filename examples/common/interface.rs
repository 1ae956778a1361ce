//! An interface's index from its name or number, for the examples' `-G` and `-I`.

/// `name` as an index: a number as it is, else the index of the interface of that name
/// in this process's network namespace (`/proc/net/if_inet6`, which lists the
/// interfaces with IPv6 addresses; `/sys/class/net` would show another namespace's when
/// the process runs in one of its own), else `/sys/class/net`.
pub fn index(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let listed = std::fs::read_to_string("/proc/net/if_inet6")
        .ok()
        .and_then(|table| {
            table.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields[..] {
                    [_, index, _, _, _, dev] if dev == name => u32::from_str_radix(index, 16).ok(),
                    _ => None,
                }
            })
        });
    listed.or_else(|| {
        std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}
