package io.strata.e2e;

import java.util.function.Supplier;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestWatcher;

/** Prints the tail of the broker's log when a test fails. */
final class BrokerLogOnFailure implements TestWatcher {
    private final Supplier<StrataBroker> broker;

    BrokerLogOnFailure(Supplier<StrataBroker> broker) {
        this.broker = broker;
    }

    @Override
    public void testFailed(ExtensionContext context, Throwable cause) {
        StrataBroker b = broker.get();
        if (b != null) {
            System.err.println("----- " + context.getDisplayName() + " failed; broker alive="
                    + b.alive() + "; tail of " + b.logFile + " -----\n" + b.logTail(120));
        }
    }
}
