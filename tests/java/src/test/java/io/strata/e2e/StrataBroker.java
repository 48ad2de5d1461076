package io.strata.e2e;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One {@code strata serve} process on 127.0.0.1 with the local object store, for the
 * tests of a class. The binary is $STRATA_BIN or target/release/strata of the repo.
 */
final class StrataBroker implements AutoCloseable {
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);

    final int port;
    final Path dataDir;
    final Path logFile;
    private final Process process;

    private StrataBroker(int port, Path dataDir, Path logFile, Process process) {
        this.port = port;
        this.dataDir = dataDir;
        this.logFile = logFile;
        this.process = process;
    }

    static Path binary() {
        String env = System.getenv("STRATA_BIN");
        if (env != null && !env.isEmpty()) {
            return Paths.get(env);
        }
        // Maven runs tests with the working directory at tests/java
        return Paths.get("").toAbsolutePath().resolve("../../target/release/strata").normalize();
    }

    static StrataBroker start(String name) throws IOException, InterruptedException {
        Path bin = binary();
        if (!Files.isExecutable(bin)) {
            throw new IllegalStateException("strata binary not found at " + bin
                    + ": run `cargo build --release` or set STRATA_BIN");
        }
        Path work = Files.createDirectories(Paths.get("target", "strata-e2e"));
        Path dataDir = Files.createTempDirectory(work.toAbsolutePath(), name + "-data-");
        Path logFile = dataDir.resolveSibling(dataDir.getFileName() + ".log");
        int port = freePort();
        ProcessBuilder pb = new ProcessBuilder(List.of(bin.toString(), "serve",
                "--listen", "127.0.0.1:" + port,
                "--data-dir", dataDir.toString(),
                "--wal-flush-ms", "5"))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()));
        pb.environment().putIfAbsent("RUST_LOG", "info");
        pb.environment().keySet().removeIf(k -> k.startsWith("AWS_") || k.startsWith("STRATA_"));
        Process process = pb.start();
        // if the JVM goes away without close() (a crash, System.exit), take the broker along
        Runtime.getRuntime().addShutdownHook(new Thread(process::destroyForcibly));
        StrataBroker broker = new StrataBroker(port, dataDir, logFile, process);
        broker.awaitReady();
        return broker;
    }

    String bootstrap() {
        return "127.0.0.1:" + port;
    }

    boolean alive() {
        return process.isAlive();
    }

    private void awaitReady() throws InterruptedException {
        Instant deadline = Instant.now().plus(READY_TIMEOUT);
        while (Instant.now().isBefore(deadline)) {
            if (!process.isAlive()) {
                throw new IllegalStateException("strata exited with " + process.exitValue()
                        + " before listening; log tail:\n" + logTail(60));
            }
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 500);
                return;
            } catch (IOException notYet) {
                Thread.sleep(50);
            }
        }
        process.destroyForcibly();
        throw new IllegalStateException("strata did not listen on " + port + " within "
                + READY_TIMEOUT + "; log tail:\n" + logTail(60));
    }

    String logTail(int lines) {
        try {
            List<String> all = Files.readAllLines(logFile, StandardCharsets.UTF_8);
            return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
        } catch (IOException e) {
            return "(cannot read " + logFile + ": " + e + ")";
        }
    }

    @Override
    public void close() throws InterruptedException {
        process.destroy(); // SIGTERM: a clean shutdown
        if (!process.waitFor(20, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }

    private static int freePort() {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
