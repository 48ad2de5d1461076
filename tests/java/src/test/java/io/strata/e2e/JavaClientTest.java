package io.strata.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/** The Java client with its default settings (idempotence on, acks=all) against Strata. */
class JavaClientTest {
    private static final int N = 10_000;
    private static StrataBroker broker;

    @RegisterExtension
    static final BrokerLogOnFailure LOG_ON_FAILURE = new BrokerLogOnFailure(() -> broker);

    @BeforeAll
    static void startBroker() throws Exception {
        broker = StrataBroker.start("java-client");
    }

    @AfterAll
    static void stopBroker() throws Exception {
        if (broker != null) {
            broker.close();
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void defaultProducerThenAssignedConsumerReadsAllInOrder() throws Exception {
        String topic = "java-default-" + System.nanoTime();
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        try (Admin admin = Admin.create(adminProps)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()
                    .get(60, TimeUnit.SECONDS);
        }

        // Nothing but the bootstrap address and serializers: every other setting is the
        // client's default (enable.idempotence=true, acks=all).
        Properties producerProps = new Properties();
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        List<Future<RecordMetadata>> sent = new ArrayList<>(N);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
            for (int i = 0; i < N; i++) {
                ProducerRecord<String, String> record =
                        new ProducerRecord<>(topic, "key-" + i, "value-" + i);
                record.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                sent.add(producer.send(record));
            }
            producer.flush();
        }
        for (int i = 0; i < N; i++) {
            RecordMetadata md = sent.get(i).get(60, TimeUnit.SECONDS);
            assertEquals(i, md.offset(), "offset of record " + i);
            assertEquals(0, md.partition());
        }

        Properties consumerProps = new Properties();
        consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        TopicPartition tp = new TopicPartition(topic, 0);
        List<ConsumerRecord<String, String>> got = new ArrayList<>(N);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps)) {
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            Instant deadline = Instant.now().plusSeconds(120);
            while (got.size() < N && Instant.now().isBefore(deadline)) {
                consumer.poll(Duration.ofMillis(500)).forEach(got::add);
            }
            Map<TopicPartition, Long> end = consumer.endOffsets(List.of(tp));
            assertEquals((long) N, end.get(tp));
            assertEquals(0L, consumer.beginningOffsets(List.of(tp)).get(tp));
        }
        assertEquals(N, got.size(), "records read back");
        for (int i = 0; i < N; i++) {
            ConsumerRecord<String, String> r = got.get(i);
            assertEquals(i, r.offset());
            assertEquals("key-" + i, r.key());
            assertEquals("value-" + i, r.value());
            Header seq = r.headers().lastHeader("seq");
            assertEquals(Integer.toString(i), new String(seq.value(), StandardCharsets.UTF_8));
            assertTrue(r.timestamp() > 0);
        }
    }
}
