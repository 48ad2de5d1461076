package io.strata.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Exit;
import org.apache.kafka.tools.consumer.group.ConsumerGroupCommand;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A classic-protocol consumer group of Java consumers with default settings on Strata
 * (whose group.initial.rebalance.delay.ms is Kafka's default here, 3 s), and Kafka's own
 * kafka-consumer-groups.sh (ConsumerGroupCommand) listing and describing it.
 */
class ConsumerGroupTest {
    private static final int PARTITIONS = 6;
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static StrataBroker broker;

    @RegisterExtension
    static final BrokerLogOnFailure LOG_ON_FAILURE = new BrokerLogOnFailure(() -> broker);

    @BeforeAll
    static void startBroker() throws Exception {
        broker = StrataBroker.start("consumer-group");
    }

    @AfterAll
    static void stopBroker() throws Exception {
        if (broker != null) {
            broker.close();
        }
    }

    /** One group member polling in its own thread; commits synchronously after each poll. */
    private static final class Member implements Runnable {
        final String name;
        final KafkaConsumer<String, String> consumer;
        final ConcurrentLinkedQueue<ConsumerRecord<String, String>> read = new ConcurrentLinkedQueue<>();
        final AtomicReference<Set<Integer>> assignment = new AtomicReference<>(Set.of());
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        private final Thread thread;
        private volatile boolean stopping;

        Member(String name, String group, String topic) {
            this.name = name;
            Properties props = new Properties();
            props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            props.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
            props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            // read what was produced before the group formed (the default is "latest");
            // everything else is the client's default (classic protocol, auto commit on,
            // range + cooperative-sticky assignors, 45 s session timeout)
            props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            consumer = new KafkaConsumer<>(props);
            consumer.subscribe(List.of(topic));
            thread = new Thread(this, "member-" + name);
            thread.setDaemon(true);
            thread.start();
        }

        @Override
        public void run() {
            try {
                while (!stopping) {
                    ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                    records.forEach(read::add);
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                    }
                    assignment.set(consumer.assignment().stream().map(TopicPartition::partition)
                            .collect(Collectors.toCollection(TreeSet::new)));
                }
            } catch (WakeupException e) {
                if (!stopping) {
                    failure.set(e);
                }
            } catch (Throwable e) {
                failure.set(e);
            } finally {
                consumer.close(); // commits what was read (auto commit) and leaves the group
            }
        }

        void close() throws InterruptedException {
            stopping = true;
            consumer.wakeup();
            thread.join(TimeUnit.SECONDS.toMillis(60));
            assertFalse(thread.isAlive(), name + " did not stop");
            if (failure.get() != null) {
                throw new AssertionError(name + " failed", failure.get());
            }
        }
    }

    private static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError(what + " not reached within " + WAIT);
            }
            Thread.sleep(100);
        }
    }

    /** Produces n records to each listed partition (acks=all, the default). */
    private static void produce(String topic, Map<Integer, Integer> perPartition, String tag) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (Map.Entry<Integer, Integer> e : perPartition.entrySet()) {
                for (int i = 0; i < e.getValue(); i++) {
                    producer.send(new ProducerRecord<>(topic, e.getKey(), "k" + i, tag + "-" + e.getKey() + "-" + i));
                }
            }
            producer.flush();
        }
    }

    private static Map<Integer, Integer> each(int n) {
        Map<Integer, Integer> m = new TreeMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            m.put(p, n);
        }
        return m;
    }

    private static Map<Integer, Long> committed(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        Map<Integer, Long> out = new TreeMap<>();
        offsets.forEach((tp, om) -> {
            if (om != null) {
                out.put(tp.partition(), om.offset());
            }
        });
        return out;
    }

    /**
     * Runs ConsumerGroupCommand as kafka-consumer-groups.sh does, in this JVM, capturing
     * stdout and stderr. Its failures are printed ("Error: ...") rather than thrown; any
     * such line fails the test.
     */
    private static synchronized String kafkaConsumerGroups(String... args) {
        String[] full = new String[args.length + 2];
        full[0] = "--bootstrap-server";
        full[1] = broker.bootstrap();
        System.arraycopy(args, 0, full, 2, args.length);
        PrintStream originalOut = System.out;
        PrintStream originalErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        Exit.setExitProcedure((code, message) -> {
            throw new AssertionError("kafka-consumer-groups exited with " + code + ": " + message
                    + "\nstdout:\n" + out.toString(StandardCharsets.UTF_8)
                    + "\nstderr:\n" + err.toString(StandardCharsets.UTF_8));
        });
        try {
            ConsumerGroupCommand.main(full);
        } finally {
            Exit.resetExitProcedure();
            System.setOut(originalOut);
            System.setErr(originalErr);
        }
        String stdout = out.toString(StandardCharsets.UTF_8);
        String stderr = err.toString(StandardCharsets.UTF_8);
        System.out.println("$ kafka-consumer-groups " + String.join(" ", args) + "\n" + stdout
                + (stderr.isBlank() ? "" : "(stderr)\n" + stderr));
        assertFalse(stdout.contains("Error:"), "kafka-consumer-groups failed:\n" + stdout + stderr);
        return stdout;
    }

    /** --describe rows of one topic: partition -> {CURRENT-OFFSET, LOG-END-OFFSET, LAG, CONSUMER-ID}. */
    private static Map<Integer, Map<String, String>> describeRows(String output, String group, String topic) {
        List<String> lines = output.lines().filter(l -> !l.isBlank()).collect(Collectors.toList());
        int header = -1;
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).trim().startsWith("GROUP ")) {
                header = i;
            }
        }
        assertTrue(header >= 0, "no header line in:\n" + output);
        List<String> columns = List.of(lines.get(header).trim().split("\\s+"));
        assertTrue(columns.containsAll(List.of("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET",
                "LOG-END-OFFSET", "LAG", "CONSUMER-ID")), columns.toString());
        Map<Integer, Map<String, String>> rows = new TreeMap<>();
        for (String line : lines.subList(header + 1, lines.size())) {
            String[] cells = line.trim().split("\\s+");
            assertEquals(columns.size(), cells.length, "row " + line + " for columns " + columns);
            Map<String, String> row = new HashMap<>();
            for (int c = 0; c < columns.size(); c++) {
                row.put(columns.get(c), cells[c]);
            }
            assertEquals(group, row.get("GROUP"), line);
            assertEquals(topic, row.get("TOPIC"), line);
            assertTrue(rows.put(Integer.parseInt(row.get("PARTITION")), row) == null, "partition twice: " + line);
        }
        return rows;
    }

    private static void assertLag(Map<Integer, Map<String, String>> rows, Map<Integer, Long> current,
            Map<Integer, Long> logEnd) {
        assertEquals(logEnd.keySet(), rows.keySet(), "partitions described");
        for (int p : rows.keySet()) {
            Map<String, String> row = rows.get(p);
            assertEquals(String.valueOf(current.get(p)), row.get("CURRENT-OFFSET"), "partition " + p);
            assertEquals(String.valueOf(logEnd.get(p)), row.get("LOG-END-OFFSET"), "partition " + p);
            assertEquals(String.valueOf(logEnd.get(p) - current.get(p)), row.get("LAG"), "partition " + p);
        }
    }

    private static Admin admin() {
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        return Admin.create(adminProps);
    }

    private static Map<Integer, Long> offsets(long each) {
        Map<Integer, Long> m = new TreeMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            m.put(p, each);
        }
        return m;
    }

    private static void awaitCommitted(Admin admin, String group, Map<Integer, Long> want)
            throws InterruptedException {
        await("offsets " + want + " committed", () -> {
            try {
                return committed(admin, group).equals(want);
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void threeMembersSplitSixPartitionsThenTwoTakeOverWithoutRereading() throws Exception {
        String topic = "java-group-" + System.nanoTime();
        String group = "java-group-g-" + System.nanoTime();
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(60, TimeUnit.SECONDS);
            produce(topic, each(20), "first");

            List<Member> members = new ArrayList<>();
            for (String name : List.of("m1", "m2", "m3")) {
                members.add(new Member(name, group, topic));
            }
            try {
                // three members, two partitions each
                await("a 2+2+2 assignment", () -> members.stream().allMatch(m -> m.assignment.get().size() == 2));
                Set<Integer> union = new HashSet<>();
                members.forEach(m -> union.addAll(m.assignment.get()));
                assertEquals(PARTITIONS, union.size(), "assignments overlap");
                await("the first 120 records read", () -> members.stream().mapToInt(m -> m.read.size()).sum() >= 120);
                for (Member m : members) {
                    for (ConsumerRecord<String, String> r : m.read) {
                        assertTrue(m.assignment.get().contains(r.partition()), m.name + " read " + r);
                    }
                }
                awaitCommitted(admin, group, offsets(20));

                // one member leaves: the other two take over all six partitions
                Member leaving = members.remove(2);
                Set<Integer> moved = leaving.assignment.get();
                leaving.close();
                await("the two remaining members owning all partitions", () -> {
                    Set<Integer> a = members.get(0).assignment.get();
                    Set<Integer> b = members.get(1).assignment.get();
                    Set<Integer> all = new HashSet<>(a);
                    all.addAll(b);
                    return a.size() + b.size() == PARTITIONS && all.size() == PARTITIONS;
                });
                produce(topic, each(15), "second");
                await("all 210 records read", () -> members.stream().mapToInt(m -> m.read.size()).sum()
                        + leaving.read.size() >= 210);
                awaitCommitted(admin, group, offsets(35));
                Thread.sleep(1000); // late re-reads would show up here

                // nothing committed was read again: every record exactly once across the group
                List<String> all = new ArrayList<>();
                Set<Integer> readByRemaining = new HashSet<>();
                for (Member m : List.of(members.get(0), members.get(1), leaving)) {
                    for (ConsumerRecord<String, String> r : m.read) {
                        all.add(r.partition() + "/" + r.offset());
                        if (m != leaving && r.value().startsWith("second")) {
                            readByRemaining.add(r.partition());
                        }
                    }
                }
                assertEquals(210, all.size(), "records read more than once: " + duplicates(all));
                assertEquals(210, new HashSet<>(all).size());
                assertTrue(readByRemaining.containsAll(moved), "moved partitions " + moved + " not consumed");
                for (Member m : members) {
                    assertTrue(m.read.stream().anyMatch(r -> r.value().startsWith("second")), m.name + " idle");
                }
            } finally {
                for (Member m : members) {
                    m.close();
                }
            }
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void kafkaConsumerGroupsListsAndDescribesLag() throws Exception {
        String topic = "java-lag-" + System.nanoTime();
        String group = "java-lag-g-" + System.nanoTime();
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(60, TimeUnit.SECONDS);
            produce(topic, each(12), "first");

            List<Member> members = new ArrayList<>(List.of(new Member("a", group, topic), new Member("b", group, topic)));
            try {
                await("a 3+3 assignment", () -> members.stream().allMatch(m -> m.assignment.get().size() == 3));
                awaitCommitted(admin, group, offsets(12));

                String listed = kafkaConsumerGroups("--list");
                assertTrue(listed.lines().anyMatch(group::equals), listed);

                String state = kafkaConsumerGroups("--describe", "--group", group, "--state");
                assertTrue(state.lines().anyMatch(l -> l.startsWith(group + " ") && l.contains("range")
                        && l.contains("Stable") && l.trim().endsWith(" 2")), state);

                // a stable group that read everything: lag 0, every partition owned
                Map<Integer, Map<String, String>> rows = describeRows(
                        kafkaConsumerGroups("--describe", "--group", group), group, topic);
                assertLag(rows, offsets(12), offsets(12));
                Set<String> owners = new HashSet<>();
                for (Map<String, String> row : rows.values()) {
                    assertFalse(row.get("CONSUMER-ID").equals("-"), "partition without owner: " + row);
                    owners.add(row.get("CLIENT-ID"));
                }
                assertEquals(Set.of("a", "b"), owners);
            } finally {
                for (Member m : members) {
                    m.close();
                }
            }

            // no members left; N more records: the lag is N on the partitions written
            Map<Integer, Integer> more = Map.of(0, 5, 3, 7, 5, 1);
            produce(topic, more, "second");
            Map<Integer, Long> logEnd = new TreeMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                logEnd.put(p, 12L + more.getOrDefault(p, 0));
            }
            assertEquals(offsets(12), committed(admin, group));
            String described = kafkaConsumerGroups("--describe", "--group", group);
            Map<Integer, Map<String, String>> rows = describeRows(described, group, topic);
            assertLag(rows, offsets(12), logEnd);
            for (Map<String, String> row : rows.values()) {
                assertEquals("-", row.get("CONSUMER-ID"), "owner of a partition of an empty group: " + row);
            }
            assertTrue(kafkaConsumerGroups("--list").lines().anyMatch(group::equals), "empty group not listed");
        }
    }

    private static String duplicates(List<String> all) {
        Set<String> seen = new HashSet<>();
        return all.stream().filter(x -> !seen.add(x)).limit(10).collect(Collectors.joining(", "));
    }
}
