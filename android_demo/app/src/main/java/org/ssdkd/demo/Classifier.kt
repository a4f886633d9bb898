package org.ssdkd.demo

import android.content.res.AssetManager
import android.os.SystemClock
import org.ssdkd.demo.core.ConfigException
import org.ssdkd.demo.core.ImagePipeline
import org.ssdkd.demo.core.Labels
import org.ssdkd.demo.core.LatencyStats
import org.ssdkd.demo.core.ModelContract
import org.ssdkd.demo.core.PixelImage
import org.ssdkd.demo.core.Postprocessing
import org.ssdkd.demo.core.Prediction
import org.ssdkd.demo.core.PreprocessingConfig
import org.ssdkd.demo.core.QuantParams
import org.ssdkd.demo.core.TensorInfo
import org.ssdkd.demo.core.TensorType
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import java.io.FileInputStream
import java.io.FileNotFoundException
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

/** One classification: top-k classes, the time spent preparing the input and running the model, the input. */
class Classification(
    val predictions: List<Prediction>,
    val preprocessMs: Double,
    val inferenceMs: Double,
    val threads: Int,
    val input: ByteBuffer,
)

/** Latency of [runs] timed inferences after [warmup] untimed ones; [greyInput] if no photo was classified yet. */
class Benchmark(
    val runs: Int,
    val warmup: Int,
    val threads: Int,
    val greyInput: Boolean,
    val p50Ms: Double,
    val p90Ms: Double,
    val meanMs: Double,
)

/**
 * The model from the APK assets (`model.tflite`, `labels.txt`, `preprocessing.json`) in a LiteRT interpreter.
 * Everything about the model comes from those files. Not thread-safe: use it from one worker thread.
 */
class Classifier private constructor(
    private val interpreter: Interpreter,
    val config: PreprocessingConfig,
    val threads: Int,
) : AutoCloseable {
    private val output: ByteBuffer =
        ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())

    fun input(image: PixelImage): ByteBuffer = ImagePipeline.modelInput(image, config)

    /** Runs the model once on [input]; returns the wall time in milliseconds. */
    private fun invoke(input: ByteBuffer): Double {
        input.rewind()
        output.rewind()
        val t0 = SystemClock.elapsedRealtimeNanos()
        interpreter.run(input, output)
        return (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
    }

    fun classify(image: PixelImage, topK: Int = 3): Classification {
        val t0 = SystemClock.elapsedRealtimeNanos()
        val input = input(image)
        val preprocessMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val inferenceMs = invoke(input)
        val probabilities = Postprocessing.probabilities(output, config)
        val predictions = Postprocessing.predictions(probabilities, config.labels, topK)
        return Classification(predictions, preprocessMs, inferenceMs, threads, input)
    }

    /** [runs] timed inferences on [input] (a mid-grey image when null) after [warmup] untimed ones. */
    fun benchmark(input: ByteBuffer?, runs: Int, warmup: Int): Benchmark {
        val x = input ?: input(grey())
        repeat(warmup) { invoke(x) }
        val ms = DoubleArray(runs) { invoke(x) }
        return Benchmark(
            runs,
            warmup,
            threads,
            input == null,
            LatencyStats.percentile(ms, 50.0),
            LatencyStats.percentile(ms, 90.0),
            ms.average(),
        )
    }

    private fun grey(): PixelImage {
        val n = config.inputSize
        return PixelImage.fromArgb(IntArray(n * n) { 0xFF808080.toInt() }, n, n)
    }

    override fun close() = interpreter.close()

    companion object {
        const val PREPROCESSING_FILE = "preprocessing.json"
        const val LABELS_FILE = "labels.txt"

        /** Loads the assets and checks the model against them; throws [ConfigException] naming what is wrong. */
        fun open(assets: AssetManager, threads: Int): Classifier {
            val config = PreprocessingConfig.parse(readText(assets, PREPROCESSING_FILE), "assets/$PREPROCESSING_FILE")
            Labels.check(Labels.parse(readText(assets, LABELS_FILE)), config)
            val model = loadModel(assets, config.modelFile)
            val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads))
            try {
                val problems = ModelContract.problems(
                    config,
                    info(interpreter.getInputTensor(0)),
                    info(interpreter.getOutputTensor(0)),
                    config.labels.size,
                )
                if (problems.isNotEmpty()) {
                    throw ConfigException(
                        "assets/${config.modelFile} does not match assets/$PREPROCESSING_FILE:\n- " +
                            problems.joinToString("\n- "),
                    )
                }
                return Classifier(interpreter, config, threads)
            } catch (e: RuntimeException) {
                interpreter.close()
                throw e
            }
        }

        private fun info(t: Tensor): TensorInfo {
            val type = when (t.dataType()) {
                DataType.FLOAT32 -> TensorType.FLOAT32
                DataType.INT8 -> TensorType.INT8
                DataType.UINT8 -> TensorType.UINT8
                else -> null
            }
            val q = t.quantizationParams()
            val quant = if (type != null && type.isQuantized) QuantParams(q.getScale().toDouble(), q.getZeroPoint()) else null
            return TensorInfo(t.shape(), type, t.dataType().toString(), quant)
        }

        private fun readText(assets: AssetManager, name: String): String =
            try {
                assets.open(name).use { String(it.readBytes(), Charsets.UTF_8) }
            } catch (e: FileNotFoundException) {
                throw ConfigException("assets/$name is missing: ${dropInHint()}")
            }

        /** Memory-maps the model (stored uncompressed, see `noCompress` in app/build.gradle.kts) or reads it. */
        private fun loadModel(assets: AssetManager, name: String): ByteBuffer {
            try {
                assets.openFd(name).use { fd ->
                    FileInputStream(fd.fileDescriptor).use { stream ->
                        return stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                    }
                }
            } catch (e: FileNotFoundException) {
                // missing, or compressed in the APK (openFd cannot map it): fall through and read it
            } catch (e: IOException) {
                // same
            }
            val bytes = try {
                assets.open(name).use { it.readBytes() }
            } catch (e: FileNotFoundException) {
                throw ConfigException("assets/$name is missing: ${dropInHint()}")
            }
            return ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder()).apply {
                put(bytes)
                rewind()
            }
        }

        fun dropInHint(): String =
            "run `ssdkd-export CHECKPOINT --target tflite --int8 --android-demo android_demo` and rebuild the app"
    }
}
