import Foundation
import RPC
import SwiftProtobuf
import Testing

/// What a sub-agent task's parameters become before anything is stored or sent.
@Suite("Sub-agent task parameters")
struct SubAgentParametersTests {
    func parameters(_ object: [String: Any]) throws -> Google_Protobuf_Struct {
        try Google_Protobuf_Struct(jsonUTF8Data: JSONSerialization.data(withJSONObject: object))
    }

    @Test("The seed's job fields plus user, group and a pids limit reach the agent's command")
    func seedFields() throws {
        let command = try CommandParameters.command(
            method: "install",
            parameters: self.parameters([
                "name": "BasicAgent", "version": "1.5.6", "url": "http://repo/BasicAgent-1.5.6.rpm",
                "checksum": "SHA256:4a34b8d7d3009bb9ef9475fbf33e7bbe4a1e8db003aefc578a241c2f51c2c2f2",
                "envs": ["PATH": "/usr/bin;/usr/local/bin"], "limits": ["CPU": "10%", "memory": "20M", "pids": "64"],
                "user": "nobody", "group": "nogroup",
            ])
        )
        #expect(command.method == "agent.install")
        let params = command.subagent
        #expect(params.name == "BasicAgent" && params.version == "1.5.6" && params.envs == ["PATH": "/usr/bin;/usr/local/bin"])
        #expect(params.limits.cpu == "10%" && params.limits.memory == "20M" && params.limits.pids == "64")
        #expect(params.user == "nobody" && params.group == "nogroup")
    }

    @Test("Names that could become paths or options, bad account names and unknown limits are refused")
    func refusals() throws {
        let bad: [[String: Any]] = [
            ["name": "../etc", "version": "1"],
            ["name": "A", "version": "1/../../x"],
            ["name": "A", "user": "-oProxyCommand"],
            ["name": "A", "group": "root;rm"],
            ["name": "A", "limits": ["disk": "1G"]],
            ["name": "A", "nice": 5],
        ]
        for object in bad {
            #expect(throws: AspireError.self, "\(object)") {
                try CommandParameters.command(method: "install", parameters: self.parameters(object))
            }
        }
        #expect(throws: AspireError.self) {
            try CommandParameters.command(method: "sync.bash", parameters: self.parameters(["cmd": "id", "user": "a b"]))
        }
    }

    @Test("A package file name gives the version a job leaves out")
    func versionFromFileName() {
        #expect(PackageFileName.version(inURL: "http://repo/x/MiniAgent-1.2.0.tar.gz", name: "MiniAgent") == "1.2.0")
        #expect(PackageFileName.version(inURL: "file:///srv/MiniAgent-1.2.tgz?x=1#y", name: "MiniAgent") == "1.2")
        #expect(PackageFileName.version(inURL: "ftp://server:21/BasicAgent/BasicAgent-1.5.6..rpm", name: "BasicAgent") == "1.5.6")
        #expect(PackageFileName.version(inURL: "https://r/BasicAgent-1.5.6-1.el7.x86_64.rpm", name: "BasicAgent") == "1.5.6-1.el7")
        #expect(PackageFileName.version(inURL: "https://r/miniagent_2.0-1_amd64.deb", name: "miniagent") == "2.0-1")
        #expect(PackageFileName.version(inURL: "aspire://package/linux/x86_64/MiniAgent-3.tar.gz", name: "MiniAgent") == "3")
        // Another name, no version, no known extension, or a version that is no path name: nothing.
        #expect(PackageFileName.version(inURL: "http://repo/OtherAgent-1.0.tar.gz", name: "MiniAgent") == nil)
        #expect(PackageFileName.version(inURL: "http://repo/MiniAgent.tar.gz", name: "MiniAgent") == nil)
        #expect(PackageFileName.version(inURL: "http://repo/MiniAgent-1.0.zip", name: "MiniAgent") == nil)
        #expect(PackageFileName.version(inURL: "command://yum install MiniAgent -y", name: "MiniAgent") == nil)
        #expect(PackageFileName.version(inURL: "http://repo/MiniAgent-..tar.gz", name: "MiniAgent") == nil)
    }

    @Test("A download link opens the one file it was made for, under the key that made it, until it expires")
    func downloadLink() throws {
        let now = Date()
        let expires = Int64(now.timeIntervalSince1970) + 60
        let file = try #require(StoreFile(url: "aspire://package/linux/x86_64/MiniAgent-1.0.tar.gz"))
        #expect(file == StoreFile(os: "linux", arch: "x86_64", file: "MiniAgent-1.0.tar.gz") && file.path == "linux/x86_64/MiniAgent-1.0.tar.gz")
        #expect(file.url == "aspire://package/linux/x86_64/MiniAgent-1.0.tar.gz")
        let link = DownloadLink(file: file, expires: expires)
        let signature = link.signature(key: "enroll-token")
        #expect(signature.count == 64)
        #expect(link.isValid(signature: signature, key: "enroll-token", now: now))
        #expect(!link.isValid(signature: signature, key: "another-token", now: now))
        #expect(!link.isValid(signature: signature, key: "enroll-token", now: now.addingTimeInterval(61)))
        let other = StoreFile(os: "linux", arch: "x86_64", file: "Other-1.0.tar.gz")
        #expect(!DownloadLink(file: other, expires: expires).isValid(signature: signature, key: "enroll-token", now: now))
        #expect(!DownloadLink(file: file, expires: expires + 3600).isValid(signature: signature, key: "enroll-token", now: now))
        #expect(StoreFile(url: "http://repo/MiniAgent-1.0.tar.gz") == nil)
        #expect(StoreFile(url: "aspire://package/linux/MiniAgent-1.0.tar.gz") == nil)
    }
}
