import Synchronization

/// Hands out loopback addresses (127.0.1.1, 127.0.1.2, ...), a new one each call, so the nodes
/// and agents of tests running at once never share an address. Port 0 on any of them picks a
/// free port; the address keeps a test's traffic apart in logs and captures.
public enum Loopback {
    private static let next = Atomic<Int>(0)

    /// A loopback address no other caller in this process got.
    public static func address() -> String {
        // 127.0.1.1 onward: 127.0.0.x stays for tools and tests that name their own.
        let n = self.next.add(1, ordering: .relaxed).newValue
        return "127.0.\(1 + (n - 1) / 254 % 254).\(1 + (n - 1) % 254)"
    }
}
