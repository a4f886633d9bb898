package org.ssdkd.demo

import android.app.Activity
import android.content.ActivityNotFoundException
import android.content.ClipData
import android.content.Intent
import android.graphics.Color
import android.graphics.Typeface
import android.os.Bundle
import android.provider.MediaStore
import android.util.TypedValue
import android.view.Gravity
import android.view.View
import android.view.ViewGroup.LayoutParams.MATCH_PARENT
import android.view.ViewGroup.LayoutParams.WRAP_CONTENT
import android.widget.Button
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import android.widget.Toast
import org.ssdkd.demo.core.PreprocessingConfig
import java.nio.ByteBuffer
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * The one screen: disclaimer, gallery/camera buttons, the photo, top-3 classes with probabilities and timings,
 * and a benchmark. The model work runs on one background thread; the views are only touched on the UI thread.
 */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()

    // worker-thread state
    private var classifier: Classifier? = null
    private var lastInput: ByteBuffer? = null

    private var threads = defaultThreads()
    private lateinit var loader: ImageLoader
    private lateinit var modelInfo: TextView
    private lateinit var photo: ImageView
    private lateinit var photoNote: TextView
    private lateinit var results: TextView
    private lateinit var timing: TextView
    private lateinit var benchmarkText: TextView
    private lateinit var threadsButton: Button
    private lateinit var buttons: List<Button>

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        loader = ImageLoader(contentResolver, cacheDir)
        setContentView(buildViews())
        loadModel()
    }

    override fun onDestroy() {
        worker.execute {
            classifier?.close()
            classifier = null
        }
        worker.shutdown()
        super.onDestroy()
    }

    private fun dp(v: Int): Int =
        TypedValue.applyDimension(TypedValue.COMPLEX_UNIT_DIP, v.toFloat(), resources.displayMetrics).toInt()

    private fun text(sizeSp: Float = 15f, mono: Boolean = false): TextView = TextView(this).apply {
        setTextSize(TypedValue.COMPLEX_UNIT_SP, sizeSp)
        if (mono) typeface = Typeface.MONOSPACE
        setPadding(0, dp(4), 0, dp(4))
    }

    private fun button(label: String, onClick: () -> Unit): Button = Button(this).apply {
        text = label
        setOnClickListener { onClick() }
        layoutParams = LinearLayout.LayoutParams(0, WRAP_CONTENT, 1f)
    }

    private fun row(vararg views: View): LinearLayout = LinearLayout(this).apply {
        orientation = LinearLayout.HORIZONTAL
        views.forEach { addView(it) }
    }

    private fun buildViews(): View {
        val disclaimer = text(14f).apply {
            text = "⚠ $DISCLAIMER"
            setBackgroundColor(Color.rgb(0xFF, 0xF3, 0xC4))
            setTextColor(Color.rgb(0x5D, 0x40, 0x37))
            setPadding(dp(12), dp(10), dp(12), dp(10))
        }
        val title = text(22f).apply {
            text = "SSD-KD skin lesion classifier"
            setTypeface(typeface, Typeface.BOLD)
        }
        modelInfo = text(13f).apply { text = "Loading the model…" }
        val gallery = button("Gallery") { pickImage() }
        val camera = button("Camera") { takePhoto() }
        photo = ImageView(this).apply {
            adjustViewBounds = true
            scaleType = ImageView.ScaleType.FIT_CENTER
            maxHeight = dp(320)
            setBackgroundColor(Color.rgb(0xEE, 0xEE, 0xEE))
            minimumHeight = dp(120)
        }
        photoNote = text(12f)
        results = text(18f, mono = true).apply { text = "Pick a photo or take one." }
        timing = text(13f)
        val benchmark = button("Benchmark ($BENCH_RUNS runs)") { runBenchmark() }
        threadsButton = button(threadsLabel()) { cycleThreads() }
        benchmarkText = text(13f, mono = true)
        buttons = listOf(gallery, camera, benchmark, threadsButton)

        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(dp(16), dp(16), dp(16), dp(16))
            addView(title)
            addView(disclaimer)
            addView(modelInfo)
            addView(row(gallery, camera))
            addView(photo, LinearLayout.LayoutParams(MATCH_PARENT, WRAP_CONTENT).apply { gravity = Gravity.CENTER })
            addView(photoNote)
            addView(results)
            addView(timing)
            addView(row(benchmark, threadsButton))
            addView(benchmarkText)
        }
        return ScrollView(this).apply { addView(column) }
    }

    private fun setBusy(busy: Boolean) = buttons.forEach { it.isEnabled = !busy }

    private fun showError(view: TextView, e: Throwable) {
        view.setTextColor(Color.rgb(0xB0, 0x00, 0x20))
        view.text = e.message ?: e.toString()
    }

    /** Runs [work] on the worker thread, then [done] with its result on the UI thread; errors go to [errorView]. */
    private fun <T> background(errorView: TextView, work: () -> T, done: (T) -> Unit) {
        setBusy(true)
        worker.execute {
            val outcome = try {
                Result.success(work())
            } catch (e: Exception) {
                Result.failure(e)
            } catch (e: OutOfMemoryError) {
                Result.failure(e)
            }
            runOnUiThread {
                if (isFinishing) return@runOnUiThread
                setBusy(false)
                outcome.fold(done) { showError(errorView, it) }
            }
        }
    }

    private fun loadModel() {
        val n = threads
        background(modelInfo, {
            classifier?.close()
            classifier = null
            Classifier.open(assets, n).also { classifier = it }.config
        }, ::showModel)
    }

    private fun showModel(config: PreprocessingConfig) {
        modelInfo.setTextColor(Color.DKGRAY)
        modelInfo.text = "Model: ${config.modelFile}, $config"
    }

    private fun requireClassifier(): Classifier =
        classifier ?: throw IllegalStateException("No model loaded: see the model line above")

    private fun classify(load: (Int) -> LoadedImage) = background(results, {
        val c = requireClassifier()
        val image = load(c.config.inputSize)
        val r = c.classify(image.pixels)
        lastInput = r.input
        Pair(image, r)
    }) { (image, r) ->
        photo.setImageBitmap(image.preview)
        photoNote.text = image.note
        results.setTextColor(Color.BLACK)
        results.text = r.predictions.mapIndexed { i, p ->
            String.format(Locale.US, "%d. %-8s %5.1f %%", i + 1, p.label, 100.0 * p.probability)
        }.joinToString("\n")
        timing.text = String.format(
            Locale.US,
            "Inference %.1f ms (%d threads) · preprocessing %.1f ms",
            r.inferenceMs,
            r.threads,
            r.preprocessMs,
        )
    }

    private fun runBenchmark() {
        benchmarkText.setTextColor(Color.DKGRAY)
        benchmarkText.text = "Running $BENCH_RUNS inferences…"
        background(benchmarkText, { requireClassifier().benchmark(lastInput, BENCH_RUNS, BENCH_WARMUP) }) { b ->
            benchmarkText.text = String.format(
                Locale.US,
                "%d runs after %d warm-up, %d threads%s\np50 %.2f ms · p90 %.2f ms · mean %.2f ms",
                b.runs,
                b.warmup,
                b.threads,
                if (b.greyInput) " (grey image)" else "",
                b.p50Ms,
                b.p90Ms,
                b.meanMs,
            )
        }
    }

    private fun threadsLabel() = "Threads: $threads"

    private fun cycleThreads() {
        val options = listOf(1, 2, 4, Runtime.getRuntime().availableProcessors()).distinct().sorted()
        threads = options[(options.indexOf(threads) + 1) % options.size]
        threadsButton.text = threadsLabel()
        loadModel()
    }

    private fun pickImage() {
        val intent = Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE)
        start(Intent.createChooser(intent, "Choose a photo"), REQUEST_PICK, "No gallery or file app found")
    }

    private fun takePhoto() {
        val uri = PhotoProvider.captureUri(this)
        PhotoProvider.captureFile(this).delete()
        val intent = Intent(MediaStore.ACTION_IMAGE_CAPTURE)
            .putExtra(MediaStore.EXTRA_OUTPUT, uri)
            .addFlags(Intent.FLAG_GRANT_WRITE_URI_PERMISSION or Intent.FLAG_GRANT_READ_URI_PERMISSION)
        intent.clipData = ClipData.newRawUri("photo", uri)
        start(intent, REQUEST_CAPTURE, "No camera app found")
    }

    private fun start(intent: Intent, request: Int, missing: String) {
        try {
            startActivityForResult(intent, request)
        } catch (e: ActivityNotFoundException) {
            Toast.makeText(this, missing, Toast.LENGTH_LONG).show()
        }
    }

    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        if (resultCode != RESULT_OK) return
        when (requestCode) {
            REQUEST_PICK -> data?.data?.let { uri -> classify { size -> loader.load(uri, size) } }
            REQUEST_CAPTURE -> classify { size -> loader.load(PhotoProvider.captureFile(this), size) }
        }
    }

    companion object {
        const val REQUEST_PICK = 1
        const val REQUEST_CAPTURE = 2
        const val BENCH_RUNS = 50
        const val BENCH_WARMUP = 5
        const val DISCLAIMER = "Research demo, not a diagnosis. This is an experimental classifier for research. " +
            "It is not a medical device and can be wrong. Do not use it to decide about any treatment; " +
            "see a doctor about any skin change that worries you."

        fun defaultThreads(): Int = minOf(4, Runtime.getRuntime().availableProcessors())
    }
}
