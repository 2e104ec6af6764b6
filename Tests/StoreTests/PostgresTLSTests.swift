import RPC
import Server
import Testing

@Suite("PostgreSQL TLS modes")
struct PostgresTLSTests {
    @Test("sslmode as libpq reads it; without one, verify-full for a store across a network and prefer on loopback")
    func modes() throws {
        #expect(try PostgresTLS(sslmode: nil, rootCertificate: nil, host: "db.example.com").mode == .verifyFull)
        #expect(try PostgresTLS(sslmode: nil, rootCertificate: nil, host: "10.0.0.5").mode == .verifyFull)
        #expect(try PostgresTLS(sslmode: nil, rootCertificate: nil, host: "127.0.0.1").mode == .prefer)
        #expect(try PostgresTLS(sslmode: nil, rootCertificate: nil, host: "localhost").mode == .prefer)
        for mode in PostgresTLS.Mode.allCases {
            #expect(try PostgresTLS(sslmode: mode.rawValue, rootCertificate: nil, host: "db.example.com").mode == mode)
        }
        let error = #expect(throws: AspireError.self) { try PostgresTLS(sslmode: "verify_full", rootCertificate: nil, host: "db") }
        #expect(error?.cause.contains("verify-full") == true)
        // A root certificate that cannot be read is an error, not an unverified connection.
        #expect(throws: (any Error).self) { try PostgresTLS(sslmode: "verify-ca", rootCertificate: "/nonexistent/ca.pem", host: "db").configuration() }
    }
}
