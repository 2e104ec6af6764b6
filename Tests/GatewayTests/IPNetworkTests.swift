import RPC
import Testing

@Suite("Networks")
struct IPNetworkTests {
    @Test("CIDR membership for IPv4, IPv6, IPv4-mapped IPv6 and single addresses; bad networks are refused")
    func membership() throws {
        let v4 = try IPNetwork(parsing: "10.1.0.0/16")
        #expect(v4.contains("10.1.255.3") && !v4.contains("10.2.0.1") && !v4.contains("::1") && !v4.contains("not-an-address"))
        #expect(v4.contains("::ffff:10.1.2.3"))
        let odd = try IPNetwork(parsing: "192.168.4.0/22")
        #expect(odd.contains("192.168.7.255") && !odd.contains("192.168.8.0"))
        let v6 = try IPNetwork(parsing: "2001:db8::/32")
        #expect(v6.contains("2001:db8:ffff::1") && !v6.contains("2001:db9::1"))
        #expect(try IPNetwork(parsing: "127.0.0.1").contains("127.0.0.1") && !(try IPNetwork(parsing: "127.0.0.1")).contains("127.0.0.2"))
        #expect(try IPNetwork(parsing: "0.0.0.0/0").contains("8.8.8.8"))
        for bad in ["10.0.0.0/33", "10.0.0/8", "host.example/8", "::/129", "10.0.0.0/-1", ""] {
            #expect(throws: AspireError.self, "\(bad)") { try IPNetwork(parsing: bad) }
        }
    }
}
