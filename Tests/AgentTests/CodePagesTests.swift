import Foundation
import Testing

@testable import Agent

@Suite("Start-up pages")
struct CodePagesTests {
    static let sample = """
        55a000000000-55a000200000 r--p 00000000 fd:01 4242                       /usr/bin/boot
        Size:               2048 kB
        Rss:                1024 kB
        Anonymous:             0 kB
        VmFlags: rd mr mw me sd
        55a000200000-55a001c00000 r-xp 00200000 fd:01 4242                       /usr/bin/boot
        Rss:               26000 kB
        Anonymous:             0 kB
        55a001c00000-55a001d00000 r--p 01c00000 fd:01 4242                       /usr/bin/boot
        Rss:                 900 kB
        Anonymous:           880 kB
        55a001d00000-55a001d10000 rw-p 01d00000 fd:01 4242                       /usr/bin/boot
        Rss:                  64 kB
        Anonymous:            64 kB
        55a002000000-55a002400000 rw-p 00000000 00:00 0                          [heap]
        Rss:                3000 kB
        Anonymous:          3000 kB
        7f0000000000-7f0000001000 r--p 00000000 fd:01 77                         /usr/lib/locale/C.utf8 (deleted)
        Rss:                   4 kB
        Anonymous:             0 kB
        7f0000100000-7f0000101000 ---p 00000000 00:00 0
        Rss:                   0 kB
        7ffd00000000-7ffd00002000 r--p 00000000 00:00 0                          [vvar]
        Rss:                   8 kB
        Anonymous:             0 kB
        """

    @Test("Reads the mappings of smaps; only read-only file pages with no private copy are released")
    func readsSmaps() {
        let mappings = CodePages.mappings(Self.sample)
        #expect(mappings.count == 8)
        #expect(mappings[1] == CodePages.Mapping(
            start: 0x55a0_0020_0000, end: 0x55a0_01c0_0000, permissions: "r-xp", path: "/usr/bin/boot", residentBytes: 26000 * 1024
        ))
        #expect(mappings[5].path == "/usr/lib/locale/C.utf8 (deleted)")
        #expect(mappings[6].path.isEmpty)
        // rodata, text and a data file, yes; relocated data made read-only (private pages), data,
        // heap, an inaccessible gap and the kernel's page, no.
        #expect(mappings.map(\.isReleasable) == [true, true, false, false, false, true, false, false])
    }

    @Test("Releasing this test binary's start-up pages unmaps them, and its code runs on")
    func releasesOwnPages() throws {
        func resident() throws -> Int {
            CodePages.mappings(try #require(CodePages.smaps()))
                .filter(\.isReleasable).reduce(0) { $0 + $1.residentBytes }
        }
        let before = try resident()
        let released = CodePages.release()
        let after = try resident()
        #expect(released.mappings >= 1 && released.bytes > 0, "\(released)")
        // Other tests run on meanwhile and map some of it again, not all.
        #expect(after < before / 2, "resident before \(before), after \(after), released \(released)")
        // The code released runs again (mapped back from the page cache).
        #expect(CodePages.mappings(Self.sample).count == 8)
    }
}
