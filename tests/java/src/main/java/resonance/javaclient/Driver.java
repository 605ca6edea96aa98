package resonance.javaclient;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import io.github.centrifugal.centrifuge.Client;
import io.github.centrifugal.centrifuge.ClientInfo;
import io.github.centrifugal.centrifuge.ConnectedEvent;
import io.github.centrifugal.centrifuge.ConnectingEvent;
import io.github.centrifugal.centrifuge.ConnectionTokenEvent;
import io.github.centrifugal.centrifuge.ConnectionTokenGetter;
import io.github.centrifugal.centrifuge.DisconnectedEvent;
import io.github.centrifugal.centrifuge.ErrorEvent;
import io.github.centrifugal.centrifuge.EventListener;
import io.github.centrifugal.centrifuge.HistoryOptions;
import io.github.centrifugal.centrifuge.HistoryResult;
import io.github.centrifugal.centrifuge.JoinEvent;
import io.github.centrifugal.centrifuge.LeaveEvent;
import io.github.centrifugal.centrifuge.MessageEvent;
import io.github.centrifugal.centrifuge.Options;
import io.github.centrifugal.centrifuge.PresenceResult;
import io.github.centrifugal.centrifuge.PresenceStatsResult;
import io.github.centrifugal.centrifuge.Publication;
import io.github.centrifugal.centrifuge.PublicationEvent;
import io.github.centrifugal.centrifuge.ReplyError;
import io.github.centrifugal.centrifuge.ServerJoinEvent;
import io.github.centrifugal.centrifuge.ServerLeaveEvent;
import io.github.centrifugal.centrifuge.ServerPublicationEvent;
import io.github.centrifugal.centrifuge.ServerSubscribedEvent;
import io.github.centrifugal.centrifuge.ServerUnsubscribedEvent;
import io.github.centrifugal.centrifuge.StreamPosition;
import io.github.centrifugal.centrifuge.SubscribedEvent;
import io.github.centrifugal.centrifuge.SubscribingEvent;
import io.github.centrifugal.centrifuge.Subscription;
import io.github.centrifugal.centrifuge.SubscriptionErrorEvent;
import io.github.centrifugal.centrifuge.SubscriptionEventListener;
import io.github.centrifugal.centrifuge.SubscriptionOptions;
import io.github.centrifugal.centrifuge.TokenCallback;
import io.github.centrifugal.centrifuge.UnsubscribedEvent;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A real centrifuge-java client (protobuf encoding) driven over stdin/stdout, the same way
 * tests/js/client.mjs drives centrifuge-js: the Python harness (tests/harness/javaclient.py) sends one op per
 * line and reads what the SDK saw.
 *
 * <p>stdin: {"id": 1, "op": "connect", ...}. stdout: replies {"id": 1, "ok": true, "result": ...} or
 * {"id": 1, "ok": false, "error": {"code": ..., "message": ..., "temporary": ...}}, and events {"event":
 * "publication", ...} in the order the SDK emitted them.
 *
 * <p>Ops: hello {} (answered once the driver is ready), connect {url, token?, name?, refreshTokens?, minReconnectDelay?, maxReconnectDelay?, timeout?},
 * subscribe {channel, token?, joinLeave?, positioned?, recoverable?, timeout?}, unsubscribe {channel},
 * publish {channel, data | b64}, presence {channel}, presenceStats {channel}, history {channel, limit?,
 * since?: {offset, epoch}, reverse?}, rpc {method, data | b64}, send {data | b64}, setToken {token},
 * disconnect {}, reconnect {timeout?}, close {}.
 *
 * <p>Data goes out as UTF-8 JSON bytes of {@code data} (or the raw bytes of {@code b64}); data that comes in
 * is reported as {@code data} (the parsed JSON) when it is UTF-8 JSON, and always as {@code b64}.
 */
public final class Driver {
    private static final Gson GSON = new GsonBuilder().serializeNulls().create();
    private static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    private final ExecutorService ops = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "op");
        t.setDaemon(true);
        return t;
    });
    private final Map<String, Subscription> subs = new ConcurrentHashMap<>();
    private final Map<String, CompletableFuture<JsonElement>> subscribing = new ConcurrentHashMap<>();
    private volatile Client client;
    private volatile CompletableFuture<JsonElement> connecting;
    private volatile String nextToken;

    public static void main(String[] args) throws Exception {
        new Driver().run();
    }

    private void run() throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            JsonObject cmd;
            try {
                cmd = JsonParser.parseString(line).getAsJsonObject();
            } catch (RuntimeException e) {
                emit(failure(null, errorOf(e)));
                continue;
            }
            ops.submit(() -> handle(cmd));
        }
        Client c = client;
        if (c != null) {
            c.disconnect();
            c.close(1000);
        }
        System.exit(0);
    }

    private void handle(JsonObject cmd) {
        JsonElement id = cmd.get("id");
        String op = cmd.has("op") ? cmd.get("op").getAsString() : "";
        try {
            JsonElement result = dispatch(op, cmd);
            JsonObject reply = new JsonObject();
            reply.add("id", id);
            reply.addProperty("ok", true);
            reply.add("result", result == null ? JsonNull.INSTANCE : result);
            emit(reply);
        } catch (Failure f) {
            emit(failure(id, f.error));
        } catch (Throwable e) {
            emit(failure(id, errorOf(e)));
        }
    }

    private JsonElement dispatch(String op, JsonObject cmd) throws Exception {
        switch (op) {
            case "hello": {
                JsonObject hello = new JsonObject();
                hello.addProperty("sdk", "centrifuge-java");
                hello.addProperty("encoding", "protobuf");
                hello.addProperty("runtime", "Java " + System.getProperty("java.version"));
                return hello;
            }
            case "connect":
                return connect(cmd);
            case "subscribe":
                return subscribe(cmd);
            case "unsubscribe": {
                Subscription s = sub(cmd);
                s.unsubscribe();
                client.removeSubscription(s);
                subs.remove(s.getChannel());
                return new JsonObject();
            }
            case "publish": {
                CompletableFuture<JsonElement> done = new CompletableFuture<>();
                sub(cmd).publish(bytesOf(cmd), (e, r) -> settle(done, e, new JsonObject()));
                return await(done, cmd);
            }
            case "presence": {
                CompletableFuture<JsonElement> done = new CompletableFuture<>();
                sub(cmd).presence((e, r) -> settle(done, e, e == null ? presenceJson(r) : null));
                return await(done, cmd);
            }
            case "presenceStats": {
                CompletableFuture<JsonElement> done = new CompletableFuture<>();
                sub(cmd).presenceStats((e, r) -> settle(done, e, e == null ? statsJson(r) : null));
                return await(done, cmd);
            }
            case "history":
                return history(cmd);
            case "rpc": {
                CompletableFuture<JsonElement> done = new CompletableFuture<>();
                client.rpc(cmd.get("method").getAsString(), bytesOf(cmd), (e, r) -> {
                    JsonObject out = new JsonObject();
                    if (e == null) {
                        putData(out, r.getData());
                    }
                    settle(done, e, out);
                });
                return await(done, cmd);
            }
            case "send": {
                CompletableFuture<JsonElement> done = new CompletableFuture<>();
                client.send(bytesOf(cmd), e -> settle(done, e, new JsonObject()));
                return await(done, cmd);
            }
            case "setToken":
                nextToken = cmd.get("token").getAsString();
                return new JsonObject();
            case "disconnect":
                client.disconnect();
                return new JsonObject();
            case "reconnect": {
                connecting = new CompletableFuture<>();
                client.connect();
                return await(connecting, cmd);
            }
            case "close": {
                Client c = client;
                if (c != null) {
                    c.disconnect();
                    c.close(1000);
                }
                Thread exit = new Thread(() -> {
                    sleep(20);
                    System.exit(0);
                });
                exit.start();
                return new JsonObject();
            }
            default:
                throw new Failure(error(null, "unknown op " + op, null));
        }
    }

    private JsonElement connect(JsonObject cmd) throws Exception {
        Options options = new Options();
        options.setName(str(cmd, "name", "resonance-tests"));
        options.setMinReconnectDelay(intOf(cmd, "minReconnectDelay", 100));
        options.setMaxReconnectDelay(intOf(cmd, "maxReconnectDelay", 1000));
        if (cmd.has("token")) {
            options.setToken(cmd.get("token").getAsString());
        }
        if (cmd.has("refreshTokens") && cmd.get("refreshTokens").getAsBoolean()) {
            // The SDK asks for a new token when the server says the old one expired; the test supplies it.
            options.setTokenGetter(new ConnectionTokenGetter() {
                @Override
                public void getConnectionToken(ConnectionTokenEvent event, TokenCallback cb) {
                    emit(event("get_token"));
                    ops.submit(() -> {
                        for (int i = 0; i < 200 && nextToken == null; i++) {
                            sleep(25);
                        }
                        String token = nextToken;
                        nextToken = null;
                        cb.Done(null, token == null ? "" : token);
                    });
                }
            });
        }
        connecting = new CompletableFuture<>();
        client = new Client(cmd.get("url").getAsString(), options, new Listener());
        client.connect();
        return await(connecting, cmd);
    }

    private JsonElement subscribe(JsonObject cmd) throws Exception {
        String channel = cmd.get("channel").getAsString();
        SubscriptionOptions options = new SubscriptionOptions();
        if (cmd.has("token")) {
            options.setToken(cmd.get("token").getAsString());
        }
        options.setJoinLeave(bool(cmd, "joinLeave"));
        options.setPositioned(bool(cmd, "positioned"));
        options.setRecoverable(bool(cmd, "recoverable"));
        CompletableFuture<JsonElement> done = new CompletableFuture<>();
        subscribing.put(channel, done);
        Subscription s = client.newSubscription(channel, options, new SubListener(channel));
        subs.put(channel, s);
        s.subscribe();
        return await(done, cmd);
    }

    private JsonElement history(JsonObject cmd) throws Exception {
        HistoryOptions.Builder builder = new HistoryOptions.Builder().withLimit(intOf(cmd, "limit", -1));
        if (cmd.has("since")) {
            JsonObject since = cmd.getAsJsonObject("since");
            builder.withSince(new StreamPosition(since.get("offset").getAsLong(), since.get("epoch").getAsString()));
        }
        if (bool(cmd, "reverse")) {
            builder.withReverse(true);
        }
        CompletableFuture<JsonElement> done = new CompletableFuture<>();
        sub(cmd).history(builder.build(), (e, r) -> settle(done, e, e == null ? historyJson(r) : null));
        return await(done, cmd);
    }

    private final class Listener extends EventListener {
        @Override
        public void onConnecting(Client c, ConnectingEvent e) {
            JsonObject o = event("connecting");
            o.addProperty("code", e.getCode());
            o.addProperty("reason", e.getReason());
            emit(o);
        }

        @Override
        public void onConnected(Client c, ConnectedEvent e) {
            JsonObject o = event("connected");
            o.addProperty("client", e.getClient());
            putData(o, e.getData());
            emit(o);
            JsonObject result = new JsonObject();
            result.addProperty("client", e.getClient());
            connecting.complete(result);
        }

        @Override
        public void onDisconnected(Client c, DisconnectedEvent e) {
            JsonObject o = event("disconnected");
            o.addProperty("code", e.getCode());
            o.addProperty("reason", e.getReason());
            emit(o);
            connecting.completeExceptionally(new Failure(error(e.getCode(), e.getReason(), null)));
        }

        @Override
        public void onError(Client c, ErrorEvent e) {
            JsonObject o = event("error");
            o.add("error", errorOf(e.getError()));
            if (e.getHttpResponseCode() != null) {
                o.addProperty("httpStatus", e.getHttpResponseCode());
            }
            emit(o);
        }

        @Override
        public void onMessage(Client c, MessageEvent e) {
            JsonObject o = event("message");
            putData(o, e.getData());
            emit(o);
        }

        @Override
        public void onSubscribed(Client c, ServerSubscribedEvent e) {
            JsonObject o = event("server_subscribed");
            o.addProperty("channel", e.getChannel());
            o.addProperty("recovered", Boolean.TRUE.equals(e.getRecovered()));
            o.addProperty("wasRecovering", Boolean.TRUE.equals(e.wasRecovering()));
            o.addProperty("recoverable", Boolean.TRUE.equals(e.getRecoverable()));
            o.addProperty("positioned", Boolean.TRUE.equals(e.getPositioned()));
            o.add("streamPosition", positionJson(e.getStreamPosition()));
            emit(o);
        }

        @Override
        public void onUnsubscribed(Client c, ServerUnsubscribedEvent e) {
            JsonObject o = event("server_unsubscribed");
            o.addProperty("channel", e.getChannel());
            emit(o);
        }

        @Override
        public void onPublication(Client c, ServerPublicationEvent e) {
            JsonObject o = event("server_publication");
            o.addProperty("channel", e.getChannel());
            putData(o, e.getData());
            o.addProperty("offset", e.getOffset());
            o.add("info", infoJson(e.getInfo()));
            emit(o);
        }

        @Override
        public void onJoin(Client c, ServerJoinEvent e) {
            JsonObject o = event("server_join");
            o.addProperty("channel", e.getChannel());
            o.add("info", infoJson(e.getInfo()));
            emit(o);
        }

        @Override
        public void onLeave(Client c, ServerLeaveEvent e) {
            JsonObject o = event("server_leave");
            o.addProperty("channel", e.getChannel());
            o.add("info", infoJson(e.getInfo()));
            emit(o);
        }
    }

    private final class SubListener extends SubscriptionEventListener {
        private final String channel;

        SubListener(String channel) {
            this.channel = channel;
        }

        private JsonObject ev(String name) {
            JsonObject o = event(name);
            o.addProperty("channel", channel);
            return o;
        }

        @Override
        public void onSubscribing(Subscription s, SubscribingEvent e) {
            JsonObject o = ev("subscribing");
            o.addProperty("code", e.getCode());
            o.addProperty("reason", e.getReason());
            emit(o);
        }

        @Override
        public void onSubscribed(Subscription s, SubscribedEvent e) {
            JsonObject o = ev("subscribed");
            o.addProperty("recoverable", Boolean.TRUE.equals(e.getRecoverable()));
            o.addProperty("positioned", Boolean.TRUE.equals(e.getPositioned()));
            o.add("streamPosition", positionJson(e.getStreamPosition()));
            o.addProperty("wasRecovering", Boolean.TRUE.equals(e.wasRecovering()));
            o.addProperty("recovered", Boolean.TRUE.equals(e.getRecovered()));
            emit(o);
            CompletableFuture<JsonElement> done = subscribing.remove(channel);
            if (done != null) {
                done.complete(new JsonObject());
            }
        }

        @Override
        public void onUnsubscribed(Subscription s, UnsubscribedEvent e) {
            JsonObject o = ev("unsubscribed");
            o.addProperty("code", e.getCode());
            o.addProperty("reason", e.getReason());
            emit(o);
            CompletableFuture<JsonElement> done = subscribing.remove(channel);
            if (done != null) {
                done.completeExceptionally(new Failure(error(e.getCode(), e.getReason(), null)));
            }
        }

        @Override
        public void onError(Subscription s, SubscriptionErrorEvent e) {
            JsonObject o = ev("sub_error");
            o.add("error", errorOf(e.getError()));
            emit(o);
        }

        @Override
        public void onPublication(Subscription s, PublicationEvent e) {
            JsonObject o = ev("publication");
            putData(o, e.getData());
            o.addProperty("offset", e.getOffset());
            o.add("info", infoJson(e.getInfo()));
            o.add("tags", e.getTags() == null ? JsonNull.INSTANCE : GSON.toJsonTree(e.getTags()));
            emit(o);
        }

        @Override
        public void onJoin(Subscription s, JoinEvent e) {
            JsonObject o = ev("join");
            o.add("info", infoJson(e.getInfo()));
            emit(o);
        }

        @Override
        public void onLeave(Subscription s, LeaveEvent e) {
            JsonObject o = ev("leave");
            o.add("info", infoJson(e.getInfo()));
            emit(o);
        }
    }

    // --- JSON shapes (the same names as tests/js/client.mjs reports) ---

    private static JsonObject event(String name) {
        JsonObject o = new JsonObject();
        o.addProperty("event", name);
        return o;
    }

    private static void putData(JsonObject o, byte[] data) {
        if (data == null) {
            o.add("data", JsonNull.INSTANCE);
            return;
        }
        o.add("data", jsonOrNull(data));
        o.addProperty("b64", Base64.getEncoder().encodeToString(data));
    }

    private static JsonElement jsonOrNull(byte[] data) {
        if (data.length == 0) {
            return JsonNull.INSTANCE;
        }
        try {
            String text = StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(data)).toString();
            return JsonParser.parseString(text);
        } catch (Exception notJson) {
            return JsonNull.INSTANCE;
        }
    }

    private static JsonElement infoJson(ClientInfo info) {
        if (info == null) {
            return JsonNull.INSTANCE;
        }
        JsonObject o = new JsonObject();
        o.addProperty("user", info.getUser());
        o.addProperty("client", info.getClient());
        if (info.getConnInfo() != null && info.getConnInfo().length > 0) {
            o.add("connInfo", jsonOrNull(info.getConnInfo()));
        }
        if (info.getChanInfo() != null && info.getChanInfo().length > 0) {
            o.add("chanInfo", jsonOrNull(info.getChanInfo()));
        }
        return o;
    }

    private static JsonElement presenceJson(PresenceResult r) {
        JsonObject clients = new JsonObject();
        for (Map.Entry<String, ClientInfo> e : r.getClients().entrySet()) {
            clients.add(e.getKey(), infoJson(e.getValue()));
        }
        JsonObject o = new JsonObject();
        o.add("clients", clients);
        return o;
    }

    private static JsonElement statsJson(PresenceStatsResult r) {
        JsonObject o = new JsonObject();
        o.addProperty("numClients", r.getNumClients());
        o.addProperty("numUsers", r.getNumUsers());
        return o;
    }

    private static JsonElement historyJson(HistoryResult r) {
        com.google.gson.JsonArray pubs = new com.google.gson.JsonArray();
        for (Publication p : r.getPublications()) {
            JsonObject o = new JsonObject();
            putData(o, p.getData());
            o.addProperty("offset", p.getOffset());
            o.add("info", infoJson(p.getInfo()));
            pubs.add(o);
        }
        JsonObject o = new JsonObject();
        o.add("publications", pubs);
        o.addProperty("offset", r.getOffset());
        o.addProperty("epoch", r.getEpoch());
        return o;
    }

    /** StreamPosition's getters are package-private in 0.4.1; read its two fields. */
    private static JsonElement positionJson(StreamPosition position) {
        if (position == null) {
            return JsonNull.INSTANCE;
        }
        JsonObject o = new JsonObject();
        try {
            Field offset = StreamPosition.class.getDeclaredField("offset");
            Field epoch = StreamPosition.class.getDeclaredField("epoch");
            offset.setAccessible(true);
            epoch.setAccessible(true);
            o.addProperty("offset", offset.getLong(position));
            Object e = epoch.get(position);
            o.add("epoch", e == null ? JsonNull.INSTANCE : new JsonPrimitive(e.toString()));
        } catch (ReflectiveOperationException e) {
            o.addProperty("unreadable", e.toString());
        }
        return o;
    }

    // --- plumbing ---

    private static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;
        final JsonObject error;

        Failure(JsonObject error) {
            super(error.toString());
            this.error = error;
        }
    }

    private static JsonObject error(Integer code, String message, Boolean temporary) {
        JsonObject o = new JsonObject();
        o.add("code", code == null ? JsonNull.INSTANCE : new JsonPrimitive(code));
        o.addProperty("message", message);
        o.add("temporary", temporary == null ? JsonNull.INSTANCE : new JsonPrimitive(temporary));
        return o;
    }

    /** A ReplyError anywhere in the cause chain gives the protocol code; else the exception's class. */
    private static JsonObject errorOf(Throwable e) {
        Throwable t = e;
        for (int depth = 0; t != null && depth < 5; depth++) {
            if (t instanceof Failure) {
                return ((Failure) t).error;
            }
            if (t instanceof ReplyError) {
                ReplyError r = (ReplyError) t;
                return error(r.getCode(), r.getMessage(), r.isTemporary());
            }
            Throwable next = t.getCause();
            if (next == null) {
                try {
                    next = (Throwable) t.getClass().getMethod("getError").invoke(t);
                } catch (ReflectiveOperationException | ClassCastException none) {
                    next = null;
                }
            }
            t = next == t ? null : next;
        }
        return error(null, e.getClass().getSimpleName() + ": " + e.getMessage(), null);
    }

    private static JsonObject failure(JsonElement id, JsonObject error) {
        JsonObject o = new JsonObject();
        o.add("id", id == null ? JsonNull.INSTANCE : id);
        o.addProperty("ok", false);
        o.add("error", error);
        return o;
    }

    private static void settle(CompletableFuture<JsonElement> done, Throwable e, JsonElement result) {
        if (e != null) {
            done.completeExceptionally(new Failure(errorOf(e)));
        } else {
            done.complete(result);
        }
    }

    private static JsonElement await(CompletableFuture<JsonElement> done, JsonObject cmd) throws Exception {
        try {
            return done.get(intOf(cmd, "timeout", 10000), TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.ExecutionException e) {
            throw e.getCause() instanceof Failure ? (Failure) e.getCause() : new Failure(errorOf(e.getCause()));
        } catch (TimeoutException e) {
            throw new Failure(error(null, "timeout", null));
        }
    }

    private Subscription sub(JsonObject cmd) throws Failure {
        Subscription s = subs.get(cmd.get("channel").getAsString());
        if (s == null) {
            throw new Failure(error(null, "not subscribed here: " + cmd.get("channel"), null));
        }
        return s;
    }

    private static byte[] bytesOf(JsonObject cmd) {
        if (cmd.has("b64")) {
            return Base64.getDecoder().decode(cmd.get("b64").getAsString());
        }
        JsonElement data = cmd.has("data") ? cmd.get("data") : JsonNull.INSTANCE;
        return GSON.toJson(data).getBytes(StandardCharsets.UTF_8);
    }

    private static String str(JsonObject cmd, String key, String fallback) {
        return cmd.has(key) && !cmd.get(key).isJsonNull() ? cmd.get(key).getAsString() : fallback;
    }

    private static int intOf(JsonObject cmd, String key, int fallback) {
        return cmd.has(key) && !cmd.get(key).isJsonNull() ? cmd.get(key).getAsInt() : fallback;
    }

    private static boolean bool(JsonObject cmd, String key) {
        return cmd.has(key) && !cmd.get(key).isJsonNull() && cmd.get(key).getAsBoolean();
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static synchronized void emit(JsonObject o) {
        OUT.println(GSON.toJson(o));
    }
}
