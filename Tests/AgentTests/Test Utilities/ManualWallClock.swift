import Foundation
import Synchronization

@testable import Agent

/// A time of day that moves only when the test says.
final class ManualWallClock: WallClock {
    private let current: Mutex<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        self.current = Mutex(start)
    }

    var now: Date { self.current.withLock { $0 } }

    func advance(by duration: Duration) {
        self.current.withLock { $0 = $0.addingTimeInterval(duration.secondsDouble) }
    }
}
