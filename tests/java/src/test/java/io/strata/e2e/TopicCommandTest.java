package io.strata.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.utils.Exit;
import org.apache.kafka.tools.TopicCommand;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Kafka's own admin tool (kafka-topics.sh is TopicCommand) managing topics on Strata. */
class TopicCommandTest {
    private static StrataBroker broker;

    @RegisterExtension
    static final BrokerLogOnFailure LOG_ON_FAILURE = new BrokerLogOnFailure(() -> broker);

    @BeforeAll
    static void startBroker() throws Exception {
        broker = StrataBroker.start("topic-command");
    }

    @AfterAll
    static void stopBroker() throws Exception {
        if (broker != null) {
            broker.close();
        }
    }

    /**
     * Runs TopicCommand like kafka-topics.sh does, without its System.exit: through the
     * static execute(String...) that main wraps, which throws on failure.
     */
    private static synchronized String kafkaTopics(String... args) throws Exception {
        String[] full = new String[args.length + 2];
        full[0] = "--bootstrap-server";
        full[1] = broker.bootstrap();
        System.arraycopy(args, 0, full, 2, args.length);
        Method execute = TopicCommand.class.getDeclaredMethod("execute", String[].class);
        execute.setAccessible(true);
        PrintStream original = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        // the tool calls Exit.exit when done; make that an exception, not a JVM exit
        Exit.setExitProcedure((code, message) -> {
            throw new ToolExited(code, message);
        });
        try {
            execute.invoke(null, (Object) full);
        } catch (InvocationTargetException e) {
            // execute() ends with Exit.exit(code) whatever happened: 0 is success
            if (!(e.getCause() instanceof ToolExited exited) || exited.code != 0) {
                throw new AssertionError("kafka-topics " + String.join(" ", args) + " failed: "
                        + e.getCause() + "\noutput:\n"
                        + captured.toString(StandardCharsets.UTF_8), e.getCause());
            }
        } finally {
            Exit.resetExitProcedure();
            System.setOut(original);
        }
        String out = captured.toString(StandardCharsets.UTF_8);
        System.out.println("$ kafka-topics " + String.join(" ", args) + "\n" + out);
        return out;
    }

    private static final class ToolExited extends RuntimeException {
        final int code;

        ToolExited(int code, String message) {
            super("TopicCommand called exit(" + code + ")" + (message == null ? "" : ": " + message));
            this.code = code;
        }
    }

    private static void assertMatches(String regex, String text) {
        assertTrue(Pattern.compile(regex).matcher(text).find(),
                "expected /" + regex + "/ in:\n" + text);
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void createListDescribeAlter() throws Exception {
        String topic = "tool-topic-" + System.nanoTime();

        String created = kafkaTopics("--create", "--topic", topic, "--partitions", "3",
                "--replication-factor", "1", "--config", "retention.ms=123456789",
                "--config", "cleanup.policy=delete");
        assertTrue(created.contains("Created topic " + topic), created);

        String listed = kafkaTopics("--list");
        assertTrue(listed.lines().anyMatch(topic::equals), listed);

        String described = kafkaTopics("--describe", "--topic", topic);
        assertMatches("Topic:\\s*" + Pattern.quote(topic) + "\\b", described);
        assertMatches("PartitionCount:\\s*3\\b", described);
        assertMatches("ReplicationFactor:\\s*1\\b", described);
        assertMatches("Configs:.*retention\\.ms=123456789", described);
        for (int p = 0; p < 3; p++) {
            assertMatches("Partition:\\s*" + p + "\\s+Leader:\\s*\\d+", described);
        }

        kafkaTopics("--alter", "--topic", topic, "--partitions", "6");
        String altered = kafkaTopics("--describe", "--topic", topic);
        assertMatches("PartitionCount:\\s*6\\b", altered);
        assertMatches("Partition:\\s*5\\s+Leader:\\s*\\d+", altered);

        // the same facts through the Admin API
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        try (Admin admin = Admin.create(props)) {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
                    .get(30, TimeUnit.SECONDS).get(topic);
            assertEquals(6, d.partitions().size());
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Map<ConfigResource, Config> configs = admin.describeConfigs(List.of(res)).all()
                    .get(30, TimeUnit.SECONDS);
            assertEquals("123456789", configs.get(res).get("retention.ms").value());
            assertEquals("delete", configs.get(res).get("cleanup.policy").value());
        }

        // and it deletes
        kafkaTopics("--delete", "--topic", topic);
        long deadline = System.currentTimeMillis() + 30_000;
        boolean gone = false;
        while (!gone && System.currentTimeMillis() < deadline) {
            gone = kafkaTopics("--list").lines().noneMatch(topic::equals);
            if (!gone) {
                Thread.sleep(500);
            }
        }
        assertTrue(gone, "topic still listed after --delete");
    }
}
