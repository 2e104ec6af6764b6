import Foundation
import Gateway
import RPC
import Testing

@Suite("REST envelope")
struct ErrorEnvelopeTests {
    @Test("Failures carry the code, its message, the cause and the matching HTTP status")
    func failure() throws {
        let envelope = ErrorEnvelope(AspireError(.notFound, "no agent package found"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(envelope), as: UTF8.self)
        #expect(json == #"{"cause":"no agent package found","message":"not found","status":130010}"#)
        #expect(envelope.httpStatus == 404)
        #expect(ErrorEnvelope(AspireError(.unauthenticated, "x")).httpStatus == 401)
        #expect(ErrorEnvelope(AspireError(.payloadTooLarge, "x")).httpStatus == 413)
        #expect(ErrorEnvelope(AspireError(.conflict, "x")).httpStatus == 409)
        #expect(ErrorEnvelope(AspireError(.unprocessable, "x")).httpStatus == 422)
        #expect(ErrorEnvelope(AspireError(.invalidParams, "x")).httpStatus == 400)
    }

    @Test("Success is status 0, message success, no cause")
    func success() throws {
        let json = String(decoding: try JSONEncoder().encode(ErrorEnvelope.success), as: UTF8.self)
        #expect(json.contains(#""status":0"#) && json.contains(#""message":"success""#) && !json.contains("cause"))
        #expect(ErrorEnvelope.success.httpStatus == 200)
    }
}
